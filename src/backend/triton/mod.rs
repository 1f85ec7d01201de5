//! `backend=triton`: the network runs on a Triton Inference Server (or any server of the
//! KServe v2 gRPC protocol), segstream does everything else. One request per
//! [`Backend::infer`] call, so each stream (or batching group) has at most one request in
//! flight; the server's dynamic batcher batches across clients, and a batching group sends
//! its batch as one request (up to the model's `max_batch_size`).
//!
//! - **Start**: connect, `ServerLive`, `ModelMetadata` (the ONNX contract is checked on the
//!   served names, shapes and FP32 types: [`crate::backend::check_contract`]), `ModelReady`,
//!   and Triton's `ModelConfig` for `max_batch_size` and the model card served with the
//!   model (the configuration parameter [`CARD_PARAMETER`]; a server without that
//!   extension is fine when the card is local). Each step has the configured deadline; an
//!   unreachable server, an unknown model or a contract mismatch is one error.
//! - **Faults**: every request carries the deadline (sent to the server as `grpc-timeout`
//!   too). A transport failure, `UNAVAILABLE` or a missed deadline is
//!   [`Error::Unavailable`]: the caller decides what the frame gets (the element's
//!   `overload` policy). The backend then waits before the next attempt (0.5 s doubling to
//!   8 s, [`crate::util::RECONNECT_FIRST_DELAY`]): calls in that time fail at once, without
//!   touching the network, and the first call after it reconnects. Other errors from the
//!   server (a bad request, the model failing) are [`Error::Triton`].
//!
//! gRPC through tonic over one HTTP/2 connection, on a single-threaded tokio runtime
//! owned by the backend (the streaming thread blocks on each call).

pub mod proto;

use std::path::Path;
use std::time::{Duration, Instant};

use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

use crate::backend::onnxruntime::{CLASS_OUTPUT, INPUT_NAME, MASK_OUTPUT};
use crate::backend::{Backend, InputTensor, Logits, check_contract};
use crate::model::ModelCard;
use crate::util::{RECONNECT_FIRST_DELAY, RECONNECT_MAX_DELAY};
use crate::{Error, Result};

/// Where segstream looks for a server unless told: Triton's gRPC port on this machine.
pub const DEFAULT_URL: &str = "127.0.0.1:8001";
/// Connect and per-request deadline unless told.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The model configuration parameter that may carry the model card (its JSON text):
/// `parameters: { key: "segstream_card" value: { string_value: "{...}" } }` in
/// `config.pbtxt` (scripts/triton-serve.sh writes it from the card beside the ONNX).
pub const CARD_PARAMETER: &str = "segstream_card";

/// How to reach the model.
#[derive(Debug, Clone, PartialEq)]
pub struct TritonOptions {
    /// `host:port` of the gRPC endpoint (`grpc://` or `http://` in front is accepted).
    pub url: String,
    /// The served model's name, `name:version` for one version (default: the server's).
    pub model: String,
    /// Deadline of the connection and of every request.
    pub timeout: Duration,
}

impl Default for TritonOptions {
    fn default() -> Self {
        TritonOptions { url: DEFAULT_URL.to_string(), model: String::new(), timeout: DEFAULT_TIMEOUT }
    }
}

impl TritonOptions {
    /// `(name, version)` of [`TritonOptions::model`]; an empty name is an error.
    pub fn model_ref(&self) -> Result<(String, String)> {
        let m = self.model.trim();
        let (name, version) = m.split_once(':').unwrap_or((m, ""));
        if name.is_empty() {
            return Err(Error::InvalidArgument(
                "backend triton needs the served model's name (triton-model / --triton-model NAME[:VERSION])".into(),
            ));
        }
        if !version.is_empty() && !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidArgument(format!("triton model version {version:?} is not a number")));
        }
        Ok((name.to_string(), version.to_string()))
    }

    /// The endpoint URI (`http://host:port`) for `url`.
    pub fn endpoint_uri(&self) -> Result<String> {
        let u = self.url.trim();
        let hostport = u.strip_prefix("grpc://").or_else(|| u.strip_prefix("http://")).unwrap_or(u).trim_end_matches('/');
        let bad = || Error::InvalidArgument(format!("triton url {u:?} is not host:port (e.g. {DEFAULT_URL})"));
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || host.contains('/') || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        Ok(format!("http://{hostport}"))
    }
}

/// The server is unreachable: when to try again, and why.
#[derive(Debug, Clone)]
struct Outage {
    retry_at: Instant,
    delay: Duration,
    reason: String,
}

pub struct TritonBackend {
    rt: tokio::runtime::Runtime,
    endpoint: Endpoint,
    channel: Channel,
    url: String,
    model: String,
    version: String,
    timeout: Duration,
    input_hw: (usize, usize),
    queries: usize,
    classes_plus_one: usize,
    max_batch: usize,
    served_card: Option<ModelCard>,
    outage: Option<Outage>,
    details: String,
}

impl std::fmt::Debug for TritonBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TritonBackend").field("url", &self.url).field("model", &self.model).finish()
    }
}

/// Is this status the server (or the way to it) being gone, rather than an answer?
fn transient(s: &tonic::Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted)
        || (s.code() == Code::Unknown && s.message().contains("transport"))
}

impl TritonBackend {
    /// Connect to the server of `opts` and check its model (see the module documentation).
    pub fn connect(opts: &TritonOptions) -> Result<Self> {
        let (model, version) = opts.model_ref()?;
        let uri = opts.endpoint_uri()?;
        let url = uri.trim_start_matches("http://").to_string();
        let timeout = opts.timeout;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Triton(format!("cannot start the gRPC runtime: {e}")))?;
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| Error::InvalidArgument(format!("triton url {:?}: {e}", opts.url)))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        let unreachable = |why: String| Error::Unavailable(format!("Triton server at {url} unreachable: {why}"));
        let channel = rt.block_on(async {
            match tokio::time::timeout(timeout, endpoint.connect()).await {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(unreachable(transport_message(&e))),
                Err(_) => Err(unreachable(format!("no connection within {:.1} s", timeout.as_secs_f64()))),
            }
        })?;
        let mut b = TritonBackend {
            rt,
            endpoint,
            channel,
            url: url.clone(),
            model,
            version,
            timeout,
            input_hw: (0, 0),
            queries: 0,
            classes_plus_one: 0,
            max_batch: 1,
            served_card: None,
            outage: None,
            details: String::new(),
        };
        let at_start = |s: tonic::Status| {
            if transient(&s) {
                unreachable(status_text(&s))
            } else {
                Error::Triton(format!("{}: {}", code_name(s.code()), s.message()))
            }
        };
        let live: proto::ServerLiveResponse = b.call(proto::SERVER_LIVE, proto::ServerLiveRequest {}).map_err(at_start)?;
        if !live.live {
            return Err(Error::Unavailable(format!("Triton server at {url} says it is not live")));
        }
        let r = proto::ModelRef { name: b.model.clone(), version: b.version.clone() };
        let shown = b.shown_model();
        let meta: proto::ModelMetadataResponse = b.call(proto::MODEL_METADATA, r.clone()).map_err(|s| {
            if s.code() == Code::NotFound || s.message().contains("unknown model") {
                Error::Triton(format!("the server at {url} has no model {shown}: {}", s.message()))
            } else {
                at_start(s)
            }
        })?;
        let ready: proto::ModelReadyResponse = b.call(proto::MODEL_READY, r.clone()).map_err(at_start)?;
        if !ready.ready {
            return Err(Error::Triton(format!("model {shown} on {url} is not ready")));
        }
        let as_pairs = |ts: &[proto::TensorMetadata]| -> Result<Vec<(String, Vec<i64>)>> {
            ts.iter()
                .map(|t| {
                    if t.datatype != "FP32" {
                        return Err(Error::ModelContract(format!(
                            "model {shown} on {url}: {:?} is {}, segstream sends and reads FP32",
                            t.name, t.datatype
                        )));
                    }
                    Ok((t.name.clone(), t.shape.clone()))
                })
                .collect()
        };
        let dims = check_contract(&as_pairs(&meta.inputs)?, &as_pairs(&meta.outputs)?)
            .map_err(|e| Error::ModelContract(format!("model {shown} on {url}: {e}")))?;
        b.input_hw = dims.input_hw;
        b.queries = dims.queries;
        b.classes_plus_one = dims.classes_plus_one;
        // Triton's configuration: the batch limit and the card served with the model. Other
        // KServe servers may not have it: then one image a request, and a local card.
        let config: std::result::Result<proto::ModelConfigResponse, _> = b.call(proto::MODEL_CONFIG, r);
        let mut batch_note = "one image a request (no model configuration served)".to_string();
        match config {
            Ok(proto::ModelConfigResponse { config: Some(c) }) => {
                b.max_batch = if c.max_batch_size > 0 { c.max_batch_size as usize } else { dims.fixed_batch.unwrap_or(1) };
                batch_note = format!("batches of up to {}", b.max_batch);
                if let Some(p) = c.parameters.get(CARD_PARAMETER) {
                    let card = ModelCard::from_json(&p.string_value, Path::new(&format!("{url}/{} ({CARD_PARAMETER})", b.model)))?;
                    b.served_card = Some(card);
                }
            }
            Ok(_) => {}
            Err(s) if transient(&s) => return Err(at_start(s)),
            Err(_) => b.max_batch = dims.fixed_batch.unwrap_or(1),
        }
        if let Some(n) = dims.fixed_batch {
            b.max_batch = b.max_batch.min(n);
        }
        b.details = format!(
            "Triton at {url}, model {shown} ({} on the server, versions {:?}), {batch_note}, deadline {:.1} s",
            if meta.platform.is_empty() { "platform not said" } else { meta.platform.as_str() },
            meta.versions,
            timeout.as_secs_f64()
        );
        Ok(b)
    }

    /// The model card the server keeps in the model's configuration, if any.
    pub fn served_card(&self) -> Option<&ModelCard> {
        self.served_card.as_ref()
    }

    fn shown_model(&self) -> String {
        if self.version.is_empty() { format!("{:?}", self.model) } else { format!("{:?} version {}", self.model, self.version) }
    }

    /// One unary call with the deadline.
    fn call<Req, Resp>(&mut self, path: &'static str, req: Req) -> std::result::Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let timeout = self.timeout;
        let channel = self.channel.clone();
        self.rt.block_on(async move {
            let mut grpc = tonic::client::Grpc::new(channel)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX);
            let work = async {
                grpc.ready().await.map_err(|e| tonic::Status::unavailable(transport_message(&e)))?;
                let mut request = tonic::Request::new(req);
                request.set_timeout(timeout);
                let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
                grpc.unary(request, PathAndQuery::from_static(path), codec).await.map(tonic::Response::into_inner)
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(r) => r,
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {:.1} s",
                    timeout.as_secs_f64()
                ))),
            }
        })
    }

    /// Note a failed attempt: wait before the next one (doubling), on a fresh connection.
    fn went_down(&mut self, reason: String) -> Error {
        let delay = match &self.outage {
            Some(o) => (o.delay * 2).min(RECONNECT_MAX_DELAY),
            None => RECONNECT_FIRST_DELAY,
        };
        self.outage = Some(Outage { retry_at: Instant::now() + delay, delay, reason: reason.clone() });
        // A lazy channel needs the runtime's context to be made (it connects on first use).
        let _in_runtime = self.rt.enter();
        self.channel = self.endpoint.connect_lazy();
        self.unavailable(&reason, delay)
    }
}

/// A status' message, with the innermost cause of a transport failure behind it.
fn status_text(s: &tonic::Status) -> String {
    use std::error::Error as _;
    match s.source() {
        Some(src) => format!("{}: {}", s.message(), transport_message(src)),
        None => s.message().to_string(),
    }
}

impl TritonBackend {
    /// The error of a call made while (or when) the server is unreachable.
    fn unavailable(&self, reason: &str, next_try: Duration) -> Error {
        Error::Unavailable(format!("Triton server at {}: {reason}; next try in {:.1} s", self.url, next_try.as_secs_f64()))
    }
}

/// The innermost cause of a transport error (tonic's outer text is only "transport error").
fn transport_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

fn code_name(c: Code) -> &'static str {
    match c {
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found",
        Code::Internal => "internal error",
        Code::Unimplemented => "not implemented",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        _ => "error",
    }
}

/// Little-endian f32 bytes of `values`.
fn to_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// `values` f32 of little-endian bytes; a length that is not `4 × n` is an error.
fn from_bytes(bytes: &[u8], n: usize, what: &str) -> Result<Vec<f32>> {
    if bytes.len() != n * 4 {
        return Err(Error::ModelContract(format!("{what}: {} bytes from the server, shape needs {}", bytes.len(), n * 4)));
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

impl Backend for TritonBackend {
    fn name(&self) -> &str {
        "triton"
    }

    fn input_size(&self) -> (usize, usize) {
        self.input_hw
    }

    fn output_dims(&self) -> (usize, usize) {
        (self.queries, self.classes_plus_one)
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn details(&self) -> Option<String> {
        Some(self.details.clone())
    }

    fn infer(&mut self, input: &InputTensor) -> Result<Logits> {
        let n = input.check(self.input_hw, None)?;
        if n > self.max_batch {
            return Err(Error::InvalidArgument(format!("batch {n} is over the served model's {}", self.max_batch)));
        }
        if let Some(o) = &self.outage {
            let now = Instant::now();
            if now < o.retry_at {
                return Err(self.unavailable(&o.reason, o.retry_at - now));
            }
        }
        let [_, c, h, w] = input.shape;
        let request = proto::ModelInferRequest {
            model_name: self.model.clone(),
            model_version: self.version.clone(),
            id: String::new(),
            inputs: vec![proto::InferInputTensor {
                name: INPUT_NAME.into(),
                datatype: "FP32".into(),
                shape: vec![n as i64, c as i64, h as i64, w as i64],
            }],
            outputs: vec![
                proto::InferRequestedOutputTensor { name: CLASS_OUTPUT.into() },
                proto::InferRequestedOutputTensor { name: MASK_OUTPUT.into() },
            ],
            raw_input_contents: vec![to_bytes(&input.data)],
        };
        let response: proto::ModelInferResponse = match self.call(proto::MODEL_INFER, request) {
            Ok(r) => r,
            Err(s) if transient(&s) => return Err(self.went_down(status_text(&s))),
            Err(s) => {
                self.outage = None;
                return Err(Error::Triton(format!("inference on {}: {}: {}", self.url, code_name(s.code()), s.message())));
            }
        };
        self.outage = None;
        if response.raw_output_contents.len() != response.outputs.len() {
            return Err(Error::ModelContract(format!(
                "the server sent {} outputs and {} raw contents (segstream reads raw tensor contents only)",
                response.outputs.len(),
                response.raw_output_contents.len()
            )));
        }
        let find = |name: &str| {
            response
                .outputs
                .iter()
                .position(|o| o.name == name)
                .ok_or_else(|| Error::ModelContract(format!("the server's answer has no output {name:?}")))
        };
        let (ci, mi) = (find(CLASS_OUTPUT)?, find(MASK_OUTPUT)?);
        let (cs, ms) = (&response.outputs[ci].shape, &response.outputs[mi].shape);
        let q = self.queries as i64;
        let (mh, mw) = ((h / 4) as i64, (w / 4) as i64);
        if cs[..] != [n as i64, q, self.classes_plus_one as i64] || ms[..] != [n as i64, q, mh, mw] {
            return Err(Error::ModelContract(format!("the server's outputs are {cs:?} and {ms:?}")));
        }
        for i in [ci, mi] {
            if response.outputs[i].datatype != "FP32" {
                return Err(Error::ModelContract(format!(
                    "output {:?} came as {}, not FP32",
                    response.outputs[i].name, response.outputs[i].datatype
                )));
            }
        }
        let class_logits = from_bytes(&response.raw_output_contents[ci], n * self.queries * self.classes_plus_one, CLASS_OUTPUT)?;
        let mask_logits = from_bytes(&response.raw_output_contents[mi], n * self.queries * (h / 4) * (w / 4), MASK_OUTPUT)?;
        Ok(Logits {
            batch: n,
            num_queries: self.queries,
            num_classes_plus_one: self.classes_plus_one,
            mask_height: h / 4,
            mask_width: w / 4,
            class_logits,
            mask_logits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_and_versions() {
        let o = |m: &str| TritonOptions { model: m.into(), ..Default::default() };
        assert_eq!(o("shapes").model_ref().unwrap(), ("shapes".into(), String::new()));
        assert_eq!(o(" shapes:3 ").model_ref().unwrap(), ("shapes".into(), "3".into()));
        assert!(o("").model_ref().unwrap_err().to_string().contains("triton-model"));
        assert!(o("shapes:latest").model_ref().unwrap_err().to_string().contains("not a number"));
    }

    #[test]
    fn urls() {
        let u = |s: &str| TritonOptions { url: s.into(), ..Default::default() }.endpoint_uri();
        assert_eq!(u("127.0.0.1:8001").unwrap(), "http://127.0.0.1:8001");
        assert_eq!(u("grpc://gpu-node:9000/").unwrap(), "http://gpu-node:9000");
        assert_eq!(u("http://[::1]:8001").unwrap(), "http://[::1]:8001");
        for bad in ["gpu-node", "gpu-node:port", ":8001", "host/x:1"] {
            assert!(u(bad).unwrap_err().to_string().contains("host:port"), "{bad}");
        }
    }

    #[test]
    fn tensor_bytes_round_trip_and_lengths_are_checked() {
        let v = [1.5f32, -2.0, 0.0, f32::MAX];
        assert_eq!(from_bytes(&to_bytes(&v), 4, "x").unwrap(), v);
        assert!(from_bytes(&to_bytes(&v), 3, "x").unwrap_err().to_string().contains("bytes"));
    }

    #[test]
    fn nobody_listening_is_one_unavailable_error_within_the_deadline() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let opts = TritonOptions {
            url: format!("127.0.0.1:{port}"),
            model: "m".into(),
            timeout: Duration::from_secs(2),
        };
        let t = Instant::now();
        let e = TritonBackend::connect(&opts).unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port} unreachable")), "{e}");
        assert!(t.elapsed() < Duration::from_secs(4), "took {:?}", t.elapsed());
    }
}
