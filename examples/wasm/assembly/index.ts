// A Proxy-Wasm filter written against the official AssemblyScript SDK
// (@solo-io/proxy-runtime), unchanged from what one would write for Envoy.
//
// - A request carrying `x-deny: yes` is answered 403 by the filter (send_local_response).
// - Every other request gets `x-greeting: <plugin configuration>` on its way upstream, and
//   `x-request-path: <:path>` as the filter read it.
// - Every response gets `x-filter: assemblyscript`.
// - The filter counts the requests it saw in the counter `as_requests`.
// - A request carrying `authorization` is checked first with an http call (`GET /check` on the
//   cluster `auth`, the `authorization` header passed on): the request waits; a 2xx answer lets
//   it through with `x-auth-user` copied from the answer's `x-user`, any other answer is
//   returned as a 403 with the answer's body, and a failed call (no answer) is a 503.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext,
  Context,
  registerRootContext,
  FilterHeadersStatusValues,
  stream_context,
  send_local_response,
  GrpcStatusValues,
  log,
  LogLevelValues,
  Counter,
  HeaderPair,
  Headers,
  WasmResultValues,
} from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

function pair(key: string, value: string): HeaderPair {
  return new HeaderPair(String.UTF8.encode(key), String.UTF8.encode(value));
}

// The answer to the auth call, in the context of the request that made it.
function onAuthAnswer(origin: Context, headers: u32, body_size: usize, _trailers: u32): void {
  if (headers == 0) {
    send_local_response(503, "auth call failed", String.UTF8.encode("auth call failed\n"), [], GrpcStatusValues.Unknown);
    return;
  }
  const status = stream_context.headers.http_callback.get(":status");
  if (status.startsWith("2")) {
    stream_context.headers.request.add("x-auth-user", stream_context.headers.http_callback.get("x-user"));
    origin.continueRequest();
    return;
  }
  const body = get_buffer_bytes(BufferTypeValues.HttpCallResponseBody, 0, body_size as u32);
  send_local_response(403, "denied by auth", body, [], GrpcStatusValues.Unknown);
}

class GreetingRoot extends RootContext {
  requests: Counter = new Counter("as_requests");

  createContext(context_id: u32): Context {
    return new Greeting(context_id, this);
  }
}

class Greeting extends Context {
  greeting_root: GreetingRoot;

  constructor(context_id: u32, root_context: GreetingRoot) {
    super(context_id, root_context);
    this.greeting_root = root_context;
  }

  onRequestHeaders(_headers: u32, _end_of_stream: bool): FilterHeadersStatusValues {
    this.greeting_root.requests.increment(1);
    if (stream_context.headers.request.get("x-deny") == "yes") {
      log(LogLevelValues.info, "denying a request");
      send_local_response(403, "denied", String.UTF8.encode("denied by assemblyscript\n"), [], GrpcStatusValues.Unknown);
      return FilterHeadersStatusValues.StopIteration;
    }
    stream_context.headers.request.add("x-greeting", this.root_context.getConfiguration());
    stream_context.headers.request.add("x-request-path", stream_context.headers.request.get(":path"));
    const authorization = stream_context.headers.request.get("authorization");
    if (authorization != "") {
      const headers: Headers = [pair(":method", "GET"), pair(":path", "/check"), pair(":authority", "auth"), pair("authorization", authorization)];
      const result = this.root_context.httpCall("auth", headers, new ArrayBuffer(0), [], 1000, this, onAuthAnswer);
      if (result != WasmResultValues.Ok) {
        send_local_response(500, "auth call refused", String.UTF8.encode("auth call refused\n"), [], GrpcStatusValues.Unknown);
      }
      return FilterHeadersStatusValues.StopIteration;
    }
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(_headers: u32, _end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-filter", "assemblyscript");
    return FilterHeadersStatusValues.Continue;
  }
}

// The root id: the GatewayPlugin's `root_id` must be the same.
registerRootContext((context_id: u32) => {
  return new GreetingRoot(context_id);
}, "greeting");
