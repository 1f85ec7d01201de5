//! The part of the KServe v2 inference protocol (gRPC, package `inference`, service
//! `GRPCInferenceService`) that the Triton backend speaks, as prost messages written here
//! with the protocol's field numbers. No code generation: no `protoc` at build time, and
//! only the fields segstream reads or writes (prost skips unknown fields, so a server's
//! newer fields do no harm).
//!
//! `ModelConfig` is Triton's extension (`model_config.proto`): segstream reads its
//! `max_batch_size` and its `parameters` (the model card, see [`super::CARD_PARAMETER`]).

use std::collections::HashMap;

/// gRPC method paths.
pub const SERVER_LIVE: &str = "/inference.GRPCInferenceService/ServerLive";
pub const MODEL_READY: &str = "/inference.GRPCInferenceService/ModelReady";
pub const MODEL_METADATA: &str = "/inference.GRPCInferenceService/ModelMetadata";
pub const MODEL_CONFIG: &str = "/inference.GRPCInferenceService/ModelConfig";
pub const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerLiveRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerLiveResponse {
    #[prost(bool, tag = "1")]
    pub live: bool,
}

/// `ModelReadyRequest`, `ModelMetadataRequest` and `ModelConfigRequest` share this layout.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelRef {
    #[prost(string, tag = "1")]
    pub name: String,
    /// Empty: the server's choice (its version policy).
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelReadyResponse {
    #[prost(bool, tag = "1")]
    pub ready: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub datatype: String,
    /// `-1` for a variable dimension (the batch, when the server batches).
    #[prost(int64, repeated, tag = "3")]
    pub shape: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelMetadataResponse {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, repeated, tag = "2")]
    pub versions: Vec<String>,
    #[prost(string, tag = "3")]
    pub platform: String,
    #[prost(message, repeated, tag = "4")]
    pub inputs: Vec<TensorMetadata>,
    #[prost(message, repeated, tag = "5")]
    pub outputs: Vec<TensorMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelParameter {
    #[prost(string, tag = "1")]
    pub string_value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelConfig {
    #[prost(string, tag = "1")]
    pub name: String,
    /// 0: the model takes no batch dimension; N: batches of up to N.
    #[prost(int32, tag = "4")]
    pub max_batch_size: i32,
    #[prost(map = "string, message", tag = "14")]
    pub parameters: HashMap<String, ModelParameter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelConfigResponse {
    #[prost(message, optional, tag = "1")]
    pub config: Option<ModelConfig>,
}

/// An input of a request and an output of a response carry the same fields segstream uses
/// as the metadata's tensors (name, datatype, shape; the protocol's `parameters` and
/// `contents` are left out: tensors travel as raw contents).
pub type InferInputTensor = TensorMetadata;
pub type InferOutputTensor = TensorMetadata;

#[derive(Clone, PartialEq, prost::Message)]
pub struct InferRequestedOutputTensor {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelInferRequest {
    #[prost(string, tag = "1")]
    pub model_name: String,
    #[prost(string, tag = "2")]
    pub model_version: String,
    #[prost(string, tag = "3")]
    pub id: String,
    #[prost(message, repeated, tag = "5")]
    pub inputs: Vec<InferInputTensor>,
    #[prost(message, repeated, tag = "6")]
    pub outputs: Vec<InferRequestedOutputTensor>,
    /// One entry per input, in order: the tensor's bytes, little-endian, row-major.
    #[prost(bytes = "vec", repeated, tag = "7")]
    pub raw_input_contents: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelInferResponse {
    #[prost(string, tag = "1")]
    pub model_name: String,
    #[prost(string, tag = "2")]
    pub model_version: String,
    #[prost(string, tag = "3")]
    pub id: String,
    #[prost(message, repeated, tag = "5")]
    pub outputs: Vec<InferOutputTensor>,
    /// One entry per output, in the order of `outputs`.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub raw_output_contents: Vec<Vec<u8>>,
}
