//! The host functions a filter imports: the Proxy-Wasm ABI calls hookway implements (module
//! `env`), small stand-ins for the few WASI calls SDK runtimes import, and a stub returning
//! `Unimplemented` (`ENOSYS` for WASI) for every other imported function, so a filter that
//! calls something hookway lacks gets a status, never a failed instantiation.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use wasmtime::{Caller, ExternType, Linker, Module, Val, ValType};

use super::abi::{self, status, BufferType, MapType, MetricType};
use super::host::{Host, LocalResponse, MapOp};
use super::metrics::Metric;
use super::{shared_data, shared_queue};

type C<'a> = Caller<'a, Host>;
type R = wasmtime::Result<i32>;

/// WASI `ENOSYS`.
const WASI_ENOSYS: i32 = 52;
/// WASI `EBADF`.
const WASI_EBADF: i32 = 8;

fn read(caller: &C<'_>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let memory = caller.data().memory?;
    slice(memory.data(caller), ptr, len).map(<[u8]>::to_vec)
}

/// `len` bytes at `ptr` of `data`, when they are all inside it.
fn slice(data: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    data.get(ptr..ptr.checked_add(len)?)
}

/// Runs `f` on the module's memory and the host state together, so arguments are read in
/// place instead of copied out first (`None` without an exported memory).
fn in_memory<T>(caller: &mut C<'_>, f: impl FnOnce(&[u8], &mut Host) -> T) -> Option<T> {
    let memory = caller.data().memory?;
    let (data, host) = memory.data_and_store_mut(caller);
    Some(f(data, host))
}

fn write(caller: &mut C<'_>, ptr: i32, bytes: &[u8]) -> bool {
    let Some(memory) = caller.data().memory else {
        return false;
    };
    let ptr = ptr as u32 as usize;
    match memory
        .data_mut(caller)
        .get_mut(ptr..ptr.saturating_add(bytes.len()))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

fn write_u32(caller: &mut C<'_>, ptr: i32, value: u32) -> bool {
    write(caller, ptr, &value.to_le_bytes())
}

/// Copies `bytes` into memory the module allocates and stores its address and size.
fn give(caller: &mut C<'_>, bytes: &[u8], ret_ptr: i32, ret_size: i32) -> R {
    let addr = if bytes.is_empty() {
        0
    } else {
        let Some(malloc) = caller.data().malloc.clone() else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        let addr = malloc.call(&mut *caller, bytes.len() as i32)?;
        if addr == 0 || !write(caller, addr, bytes) {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
        addr
    };
    if write_u32(caller, ret_ptr, addr as u32) && write_u32(caller, ret_size, bytes.len() as u32) {
        Ok(status::OK)
    } else {
        Ok(status::INVALID_MEMORY_ACCESS)
    }
}

macro_rules! arg {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(status::BAD_ARGUMENT),
        }
    };
}

macro_rules! mem {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(status::INVALID_MEMORY_ACCESS),
        }
    };
}

/// Builds the linker for `module`: hookway's host functions plus stubs for its other imports.
pub fn linker(module: &Module) -> Result<Linker<Host>, String> {
    let mut linker = Linker::new(module.engine());
    let mut defined = HashSet::new();
    define_proxy(&mut linker, &mut defined).map_err(|e| e.to_string())?;
    for wasi in ["wasi_snapshot_preview1", "wasi_unstable"] {
        define_wasi(&mut linker, wasi, &mut defined).map_err(|e| e.to_string())?;
    }
    for import in module.imports() {
        let (m, name) = (import.module(), import.name());
        if defined.contains(&(m.to_string(), name.to_string())) {
            continue;
        }
        let ExternType::Func(ty) = import.ty() else {
            return Err(format!(
                "the module imports {m}.{name}, which is not a function: hookway provides only functions"
            ));
        };
        let fatal = name == "abort" || name == "proc_exit";
        let unimplemented = if m.starts_with("wasi") {
            WASI_ENOSYS
        } else {
            status::UNIMPLEMENTED
        };
        let what = format!("{m}.{name}");
        let results: Vec<ValType> = ty.results().collect();
        linker
            .func_new(m, name, ty, move |_, _, out| {
                if fatal {
                    return Err(wasmtime::Error::msg(format!("the filter called {what}")));
                }
                for (slot, ty) in out.iter_mut().zip(&results) {
                    *slot = Val::default_for_ty(ty).unwrap_or(Val::I32(0));
                }
                if let (Some(slot), Some(ValType::I32)) = (out.first_mut(), results.first()) {
                    *slot = Val::I32(unimplemented);
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(linker)
}

type Defined = HashSet<(String, String)>;

fn define_proxy(linker: &mut Linker<Host>, defined: &mut Defined) -> wasmtime::Result<()> {
    let mut def = |name: &str| {
        defined.insert(("env".to_string(), name.to_string()));
    };
    linker.func_wrap(
        "env",
        "proxy_log",
        |caller: C<'_>, level: i32, ptr: i32, len: i32| -> R {
            let message = mem!(read(&caller, ptr, len));
            let message = String::from_utf8_lossy(&message);
            let alias = &*caller.data().shared.alias;
            match level {
                0 => tracing::trace!(target: "hookway::wasm", plugin = alias, "{message}"),
                1 => tracing::debug!(target: "hookway::wasm", plugin = alias, "{message}"),
                2 => tracing::info!(target: "hookway::wasm", plugin = alias, "{message}"),
                3 => tracing::warn!(target: "hookway::wasm", plugin = alias, "{message}"),
                _ => tracing::error!(target: "hookway::wasm", plugin = alias, "{message}"),
            }
            Ok(status::OK)
        },
    )?;
    def("proxy_log");
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: C<'_>, ret: i32| -> R {
            use tracing::level_filters::LevelFilter;
            let level = match LevelFilter::current() {
                LevelFilter::TRACE => 0,
                LevelFilter::DEBUG => 1,
                LevelFilter::INFO => 2,
                LevelFilter::WARN => 3,
                _ => 4,
            };
            Ok(if write_u32(&mut caller, ret, level) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    def("proxy_get_log_level");
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: C<'_>, ret: i32| -> R {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            Ok(if write(&mut caller, ret, &now.to_le_bytes()) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    def("proxy_get_current_time_nanoseconds");
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: C<'_>, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| -> R {
            let kind = arg!(BufferType::from_abi(kind));
            let host = caller.data();
            let (start, max) = (start as u32 as usize, max as u32 as usize);
            let slice = |bytes: &[u8]| -> Option<Vec<u8>> {
                let begin = start.min(bytes.len());
                let end = begin.saturating_add(max).min(bytes.len());
                (start <= bytes.len()).then(|| bytes[begin..end].to_vec())
            };
            let bytes = match kind {
                BufferType::PluginConfiguration => slice(&host.shared.configuration),
                BufferType::VmConfiguration => Some(Vec::new()),
                body => host.body(body).and_then(slice),
            };
            match bytes {
                Some(bytes) => give(&mut caller, &bytes, ret_ptr, ret_size),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    def("proxy_get_buffer_bytes");
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: C<'_>, kind: i32, start: i32, size: i32, ptr: i32, len: i32| -> R {
            let kind = arg!(BufferType::from_abi(kind));
            let data = mem!(read(&caller, ptr, len));
            Ok(caller
                .data_mut()
                .set_body(kind, start as u32 as usize, size as u32 as usize, &data))
        },
    )?;
    def("proxy_set_buffer_bytes");
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: C<'_>, map: i32, ret_ptr: i32, ret_size: i32| -> R {
            let map = arg!(MapType::from_abi(map));
            let bytes = caller.data().map_pairs(map);
            give(&mut caller, &bytes, ret_ptr, ret_size)
        },
    )?;
    def("proxy_get_header_map_pairs");
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: C<'_>, map: i32, ptr: i32, len: i32| -> R {
            let map = arg!(MapType::from_abi(map));
            let changed = in_memory(&mut caller, |data, host| {
                Some(host.map_set_pairs(map, slice(data, ptr, len)?))
            });
            Ok(mem!(changed.flatten()))
        },
    )?;
    def("proxy_set_header_map_pairs");
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: C<'_>, map: i32, key: i32, key_len: i32, ret_ptr: i32, ret_size: i32| -> R {
            let map = arg!(MapType::from_abi(map));
            let value = in_memory(&mut caller, |data, host| {
                slice(data, key, key_len).map(|key| host.map_get(map, key))
            });
            match mem!(value.flatten()) {
                Some(value) => give(&mut caller, &value, ret_ptr, ret_size),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    def("proxy_get_header_map_value");
    for (name, add) in [
        ("proxy_replace_header_map_value", false),
        ("proxy_add_header_map_value", true),
    ] {
        linker.func_wrap(
            "env",
            name,
            move |mut caller: C<'_>,
                  map: i32,
                  key: i32,
                  key_len: i32,
                  value: i32,
                  value_len: i32|
                  -> R {
                let map = arg!(MapType::from_abi(map));
                let changed = in_memory(&mut caller, |data, host| {
                    let key = slice(data, key, key_len)?;
                    let value = slice(data, value, value_len)?;
                    let op = if add {
                        MapOp::Add(key, value)
                    } else {
                        MapOp::Replace(key, value)
                    };
                    Some(host.map_change(map, op))
                });
                Ok(mem!(changed.flatten()))
            },
        )?;
        def(name);
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: C<'_>, map: i32, key: i32, key_len: i32| -> R {
            let map = arg!(MapType::from_abi(map));
            let changed = in_memory(&mut caller, |data, host| {
                Some(host.map_change(map, MapOp::Remove(slice(data, key, key_len)?)))
            });
            Ok(mem!(changed.flatten()))
        },
    )?;
    def("proxy_remove_header_map_value");
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: C<'_>, ptr: i32, len: i32, ret_ptr: i32, ret_size: i32| -> R {
            let path = mem!(read(&caller, ptr, len));
            let path: String = String::from_utf8_lossy(&path).replace('\0', ".");
            match caller.data().property(&path) {
                Some(value) => give(&mut caller, &value, ret_ptr, ret_size),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    def("proxy_get_property");
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: C<'_>,
         code: i32,
         _details: i32,
         _details_len: i32,
         body: i32,
         body_len: i32,
         headers: i32,
         headers_len: i32,
         _grpc_status: i32|
         -> R {
            let status_code = arg!(u16::try_from(code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok()));
            let body = mem!(read(&caller, body, body_len));
            let headers = mem!(read(&caller, headers, headers_len));
            let Some(pairs) = abi::deserialize_pairs(&headers) else {
                return Ok(status::SERIALIZATION_FAILURE);
            };
            let mut parsed = Vec::with_capacity(pairs.len());
            for (name, value) in pairs {
                let (Ok(name), Ok(value)) =
                    (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
                else {
                    return Ok(status::BAD_ARGUMENT);
                };
                parsed.push((name, value));
            }
            caller.data_mut().local_response = Some(LocalResponse {
                status: status_code,
                headers: parsed,
                body: Bytes::from(body),
            });
            Ok(status::OK)
        },
    )?;
    def("proxy_send_local_response");
    // Resuming a request paused for a `proxy_http_call`: the hook waiting for the call's
    // answer lets it go on. Every other stream moves on by itself when a call returns.
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut caller: C<'_>, stream: i32| -> R {
            if stream == 0 {
                caller.data_mut().calls.continued = true;
            }
            Ok(status::OK)
        },
    )?;
    def("proxy_continue_stream");
    linker.func_wrap("env", "proxy_continue_request", |mut caller: C<'_>| -> R {
        caller.data_mut().calls.continued = true;
        Ok(status::OK)
    })?;
    def("proxy_continue_request");
    linker.func_wrap("env", "proxy_continue_response", |_: C<'_>| -> R {
        Ok(status::OK)
    })?;
    def("proxy_continue_response");
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: C<'_>,
         upstream: i32,
         upstream_len: i32,
         headers: i32,
         headers_len: i32,
         body: i32,
         body_len: i32,
         _trailers: i32,
         _trailers_len: i32,
         timeout: i32,
         ret_token: i32|
         -> R {
            let upstream = mem!(read(&caller, upstream, upstream_len));
            let headers = mem!(read(&caller, headers, headers_len));
            let body = mem!(read(&caller, body, body_len));
            let dispatched =
                caller
                    .data_mut()
                    .dispatch_call(&upstream, &headers, &body, timeout as u32);
            match dispatched {
                Ok(token) => Ok(if write_u32(&mut caller, ret_token, token) {
                    status::OK
                } else {
                    status::INVALID_MEMORY_ACCESS
                }),
                Err(status) => Ok(status),
            }
        },
    )?;
    def("proxy_http_call");
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |_: C<'_>, _: i32| -> R { Ok(status::OK) },
    )?;
    def("proxy_set_effective_context");
    linker.func_wrap("env", "proxy_done", |_: C<'_>| -> R { Ok(status::OK) })?;
    def("proxy_done");
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: C<'_>, kind: i32, ptr: i32, len: i32, ret: i32| -> R {
            let kind = arg!(MetricType::from_abi(kind));
            let name = mem!(read(&caller, ptr, len));
            let name = String::from_utf8_lossy(&name);
            let Some(id) = caller.data().shared.metrics.define(kind, &name) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            Ok(if write_u32(&mut caller, ret, id) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    def("proxy_define_metric");
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |caller: C<'_>, id: i32, offset: i64| -> R {
            Ok(match caller.data().shared.metrics.get(id as u32) {
                Some(Metric::Counter(c)) if offset >= 0 => {
                    c.inc_by(offset as u64);
                    status::OK
                }
                Some(Metric::Gauge(g)) => {
                    g.add(offset);
                    status::OK
                }
                Some(_) => status::BAD_ARGUMENT,
                None => status::NOT_FOUND,
            })
        },
    )?;
    def("proxy_increment_metric");
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |caller: C<'_>, id: i32, value: i64| -> R {
            Ok(match caller.data().shared.metrics.get(id as u32) {
                Some(Metric::Counter(c)) => {
                    let value = value as u64;
                    let now = c.get();
                    if value >= now {
                        c.inc_by(value - now);
                        status::OK
                    } else {
                        status::BAD_ARGUMENT
                    }
                }
                Some(Metric::Gauge(g)) => {
                    g.set(value);
                    status::OK
                }
                Some(Metric::Histogram(h)) => {
                    h.observe(value as u64 as f64);
                    status::OK
                }
                None => status::NOT_FOUND,
            })
        },
    )?;
    def("proxy_record_metric");
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: C<'_>, id: i32, ret: i32| -> R {
            let value = match caller.data().shared.metrics.get(id as u32) {
                Some(Metric::Counter(c)) => c.get(),
                Some(Metric::Gauge(g)) => g.get() as u64,
                Some(Metric::Histogram(_)) => return Ok(status::BAD_ARGUMENT),
                None => return Ok(status::NOT_FOUND),
            };
            Ok(if write(&mut caller, ret, &value.to_le_bytes()) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    )?;
    def("proxy_get_metric");
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut caller: C<'_>, ptr: i32, len: i32, ret_ptr: i32, ret_size: i32, ret_cas: i32| -> R {
            let key = mem!(read(&caller, ptr, len));
            let Some((value, cas)) = shared_data::get(&key) else {
                return Ok(status::NOT_FOUND);
            };
            let result = give(&mut caller, &value, ret_ptr, ret_size)?;
            if result == status::OK && !write_u32(&mut caller, ret_cas, cas) {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            Ok(result)
        },
    )?;
    def("proxy_get_shared_data");
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |caller: C<'_>, ptr: i32, len: i32, value: i32, value_len: i32, cas: i32| -> R {
            let key = mem!(read(&caller, ptr, len));
            let value = mem!(read(&caller, value, value_len));
            Ok(shared_data::set(&key, &value, cas as u32))
        },
    )?;
    def("proxy_set_shared_data");
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |caller: C<'_>, period: i32| -> R {
            caller.data().shared.root.set_period(period as u32);
            Ok(status::OK)
        },
    )?;
    def("proxy_set_tick_period_milliseconds");
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut caller: C<'_>, ptr: i32, len: i32, ret: i32| -> R {
            let name = mem!(read(&caller, ptr, len));
            let root = &caller.data().shared.root;
            let registered = shared_queue::register(
                &root.namespace,
                &name,
                root.max_queue_length,
                root.queue_owner(),
            );
            match registered {
                Ok(id) => Ok(if write_u32(&mut caller, ret, id) {
                    status::OK
                } else {
                    status::INVALID_MEMORY_ACCESS
                }),
                Err(status) => Ok(status),
            }
        },
    )?;
    def("proxy_register_shared_queue");
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        // The VM id is ignored: hookway has one name space per GatewayPlugin namespace.
        |mut caller: C<'_>, _vm: i32, _vm_len: i32, ptr: i32, len: i32, ret: i32| -> R {
            let name = mem!(read(&caller, ptr, len));
            let root = &caller.data().shared.root;
            match shared_queue::resolve(&root.namespace, &name) {
                Some(id) => Ok(if write_u32(&mut caller, ret, id) {
                    status::OK
                } else {
                    status::INVALID_MEMORY_ACCESS
                }),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    def("proxy_resolve_shared_queue");
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |caller: C<'_>, id: i32, ptr: i32, len: i32| -> R {
            let message = mem!(read(&caller, ptr, len));
            let root = &caller.data().shared.root;
            Ok(shared_queue::enqueue(&root.namespace, id as u32, &message))
        },
    )?;
    def("proxy_enqueue_shared_queue");
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut caller: C<'_>, id: i32, ret_ptr: i32, ret_size: i32| -> R {
            let root = &caller.data().shared.root;
            match shared_queue::dequeue(&root.namespace, id as u32) {
                Ok(message) => give(&mut caller, &message, ret_ptr, ret_size),
                Err(status) => Ok(status),
            }
        },
    )?;
    def("proxy_dequeue_shared_queue");
    Ok(())
}

fn define_wasi(
    linker: &mut Linker<Host>,
    module: &'static str,
    defined: &mut Defined,
) -> wasmtime::Result<()> {
    let mut def = |name: &str| {
        defined.insert((module.to_string(), name.to_string()));
    };
    // Standard output and error go to the log; nothing else is writable.
    linker.func_wrap(
        module,
        "fd_write",
        |mut caller: C<'_>, fd: i32, iovs: i32, iovs_len: i32, ret: i32| -> wasmtime::Result<i32> {
            if fd != 1 && fd != 2 {
                return Ok(WASI_EBADF);
            }
            let mut text = Vec::new();
            for i in 0..iovs_len.clamp(0, 1024) {
                let Some(iov) = read(&caller, iovs.wrapping_add(i * 8), 8) else {
                    return Ok(WASI_EBADF);
                };
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                let Some(bytes) = read(&caller, ptr, len) else {
                    return Ok(WASI_EBADF);
                };
                text.extend_from_slice(&bytes);
            }
            let alias = &*caller.data().shared.alias;
            tracing::info!(target: "hookway::wasm", plugin = alias, fd, "{}", String::from_utf8_lossy(&text).trim_end());
            let n = text.len() as u32;
            Ok(if write_u32(&mut caller, ret, n) { 0 } else { WASI_EBADF })
        },
    )?;
    def("fd_write");
    linker.func_wrap(
        module,
        "proc_exit",
        |_: C<'_>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(format!(
                "the filter called proc_exit({code})"
            )))
        },
    )?;
    def("proc_exit");
    linker.func_wrap(
        module,
        "clock_time_get",
        |mut caller: C<'_>, _id: i32, _precision: i64, ret: i32| -> wasmtime::Result<i32> {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            Ok(if write(&mut caller, ret, &now.to_le_bytes()) {
                0
            } else {
                WASI_EBADF
            })
        },
    )?;
    def("clock_time_get");
    linker.func_wrap(
        module,
        "random_get",
        |mut caller: C<'_>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let mut bytes = vec![0u8; (len as u32 as usize).min(1 << 16)];
            rand::fill(&mut bytes[..]);
            Ok(if write(&mut caller, ptr, &bytes) {
                0
            } else {
                WASI_EBADF
            })
        },
    )?;
    def("random_get");
    // No environment and no arguments.
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            module,
            name,
            |mut caller: C<'_>, count: i32, size: i32| -> wasmtime::Result<i32> {
                Ok(
                    if write_u32(&mut caller, count, 0) && write_u32(&mut caller, size, 0) {
                        0
                    } else {
                        WASI_EBADF
                    },
                )
            },
        )?;
        def(name);
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(
            module,
            name,
            |_: C<'_>, _: i32, _: i32| -> wasmtime::Result<i32> { Ok(0) },
        )?;
        def(name);
    }
    Ok(())
}
