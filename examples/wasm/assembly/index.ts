// A Proxy-Wasm filter written against the official AssemblyScript SDK
// (@solo-io/proxy-runtime), unchanged from what one would write for Envoy.
//
// - A request carrying `x-deny: yes` is answered 403 by the filter (send_local_response).
// - Every other request gets `x-greeting: <plugin configuration>` on its way upstream, and
//   `x-request-path: <:path>` as the filter read it.
// - Every response gets `x-filter: assemblyscript`.
// - The filter counts the requests it saw in the counter `as_requests`.
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
} from "@solo-io/proxy-runtime";

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
