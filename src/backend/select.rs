//! Which backend runs a model: the `backend` and `device` options (element properties,
//! CLI flags), parsed in one place, and the order in which `device=auto` falls back.
//!
//! | backend | device=auto tries, in order | device=cuda | device=cpu |
//! | --- | --- | --- | --- |
//! | `onnxruntime` (default) | ORT CUDA → ORT CPU | ORT CUDA | ORT CPU |
//! | `onnxruntime-cuda` | ORT CUDA → ORT CPU | ORT CUDA | refused |
//! | `onnxruntime-tensorrt` | ORT TensorRT → ORT CUDA → ORT CPU | ORT TensorRT | refused |
//! | `tensorrt` | native TensorRT | native TensorRT | refused |
//! | `openvino` | OpenVINO → ORT CPU | refused | OpenVINO |
//! | `triton` | Triton server | refused | Triton server |
//!
//! An explicit device never falls back: a runtime without the provider is an error that
//! says so. The native TensorRT backend never falls back to ONNX Runtime either: a
//! `.engine` file runs nowhere else, and a build without the `tensorrt` feature says so.
//! OpenVINO runs on its own device names (the `openvino-device` option: CPU, GPU, NPU),
//! never on `device=cuda`; with `device=auto` a library that does not load falls back to
//! ONNX Runtime's CPU provider, said as every fallback is (and `device=cpu` makes it an
//! error instead). `triton` runs the network on a Triton Inference Server (`triton-url`,
//! `triton-model`): the device is the server's, never falls back to local inference, and
//! `device=cuda` (local CUDA) is refused.

use gstreamer::glib;

use crate::backend::onnxruntime::Provider;
use crate::{Error, Result};

/// The `backend` option (element property, CLI flag; the property's nicks are the names
/// [`BackendKind::as_str`] gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamBackend")]
pub enum BackendKind {
    /// ONNX Runtime; the device picks the execution provider.
    #[default]
    #[enum_value(name = "ONNX Runtime (CUDA or CPU, as the device property says)", nick = "onnxruntime")]
    OnnxRuntime = 0,
    /// ONNX Runtime with its CUDA execution provider.
    #[enum_value(name = "ONNX Runtime's CUDA execution provider", nick = "onnxruntime-cuda")]
    OnnxRuntimeCuda = 1,
    /// ONNX Runtime with its TensorRT execution provider (engine cache beside the model).
    #[enum_value(
        name = "ONNX Runtime's TensorRT execution provider (engine cache beside the model)",
        nick = "onnxruntime-tensorrt"
    )]
    OnnxRuntimeTensorRt = 2,
    /// segstream's native TensorRT backend (feature `tensorrt`).
    #[enum_value(
        name = "Native TensorRT: a .engine file, or an .onnx built into one beside it on first use (needs the tensorrt feature)",
        nick = "tensorrt"
    )]
    TensorRt = 3,
    /// OpenVINO (its device from the `openvino-device` option; library loaded at run time).
    #[enum_value(
        name = "OpenVINO (f32 or bf16 on the CPU, see precision; its device from openvino-device)",
        nick = "openvino"
    )]
    OpenVino = 4,
    /// A Triton Inference Server (KServe v2 over gRPC): `triton-url`, `triton-model`.
    #[enum_value(
        name = "Triton Inference Server over gRPC (triton-url, triton-model; the network runs on the server)",
        nick = "triton"
    )]
    Triton = 5,
}

impl BackendKind {
    pub const ALL: [BackendKind; 6] = [
        BackendKind::OnnxRuntime,
        BackendKind::OnnxRuntimeCuda,
        BackendKind::OnnxRuntimeTensorRt,
        BackendKind::TensorRt,
        BackendKind::OpenVino,
        BackendKind::Triton,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::OnnxRuntime => "onnxruntime",
            BackendKind::OnnxRuntimeCuda => "onnxruntime-cuda",
            BackendKind::OnnxRuntimeTensorRt => "onnxruntime-tensorrt",
            BackendKind::TensorRt => "tensorrt",
            BackendKind::OpenVino => "openvino",
            BackendKind::Triton => "triton",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let l = s.trim().to_ascii_lowercase();
        let k = match l.as_str() {
            "onnxruntime" | "ort" => BackendKind::OnnxRuntime,
            "onnxruntime-cuda" | "ort-cuda" => BackendKind::OnnxRuntimeCuda,
            "onnxruntime-tensorrt" | "ort-tensorrt" | "ort-trt" => BackendKind::OnnxRuntimeTensorRt,
            "tensorrt" | "trt" => BackendKind::TensorRt,
            "openvino" | "ov" => BackendKind::OpenVino,
            "triton" => BackendKind::Triton,
            _ => {
                let names: Vec<&str> = BackendKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(Error::InvalidArgument(format!("unknown backend {s:?} ({})", names.join(", "))));
            }
        };
        Ok(k)
    }
}

/// The `device` option (element property, CLI flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegstreamDevice")]
pub enum Device {
    /// The backend's best device, falling back as the table above says.
    #[default]
    #[enum_value(
        name = "Best available: the backend's GPU provider, falling back towards the CPU (ONNX Runtime only)",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "CPU (ONNX Runtime or OpenVINO), no fallback", nick = "cpu")]
    Cpu = 1,
    #[enum_value(name = "CUDA device, no fallback: an error if the runtime lacks it", nick = "cuda")]
    Cuda = 2,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Auto => "auto",
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

impl std::str::FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            _ => Err(Error::InvalidArgument(format!("unknown device {s:?} (auto, cpu, cuda)"))),
        }
    }
}

/// One way of opening a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Ort(Provider),
    NativeTensorRt,
    OpenVino,
    Triton,
}

impl Attempt {
    pub fn name(self) -> &'static str {
        match self {
            Attempt::Ort(Provider::Cpu) => "onnxruntime-cpu",
            Attempt::Ort(Provider::Cuda) => "onnxruntime-cuda",
            Attempt::Ort(Provider::TensorRt) => "onnxruntime-tensorrt",
            Attempt::NativeTensorRt => "tensorrt",
            Attempt::OpenVino => "openvino",
            Attempt::Triton => "triton",
        }
    }
}

/// The attempts for `backend` on `device`, in order (the first that opens wins).
pub fn plan(backend: BackendKind, device: Device) -> Result<Vec<Attempt>> {
    use Attempt::*;
    use Provider::*;
    let gpu_only = |b: BackendKind| {
        Err(Error::InvalidArgument(format!(
            "backend {b} runs on CUDA devices only; device=cpu needs backend onnxruntime or openvino"
        )))
    };
    Ok(match (backend, device) {
        (BackendKind::OnnxRuntime, Device::Auto) => vec![Ort(Cuda), Ort(Cpu)],
        (BackendKind::OnnxRuntime, Device::Cpu) => vec![Ort(Cpu)],
        (BackendKind::OnnxRuntime, Device::Cuda) => vec![Ort(Cuda)],
        (BackendKind::OnnxRuntimeCuda, Device::Auto) => vec![Ort(Cuda), Ort(Cpu)],
        (BackendKind::OnnxRuntimeCuda, Device::Cuda) => vec![Ort(Cuda)],
        (BackendKind::OnnxRuntimeTensorRt, Device::Auto) => vec![Ort(TensorRt), Ort(Cuda), Ort(Cpu)],
        (BackendKind::OnnxRuntimeTensorRt, Device::Cuda) => vec![Ort(TensorRt)],
        (BackendKind::TensorRt, Device::Auto | Device::Cuda) => vec![NativeTensorRt],
        (BackendKind::OpenVino, Device::Auto) => vec![OpenVino, Ort(Cpu)],
        (BackendKind::OpenVino, Device::Cpu) => vec![OpenVino],
        (BackendKind::OpenVino, Device::Cuda) => {
            return Err(Error::InvalidArgument(
                "backend openvino does not run on CUDA devices: use device=auto or cpu, and openvino-device for \
                 OpenVINO's own devices (CPU, GPU, NPU)"
                    .into(),
            ));
        }
        (BackendKind::Triton, Device::Auto | Device::Cpu) => vec![Triton],
        (BackendKind::Triton, Device::Cuda) => {
            return Err(Error::InvalidArgument(
                "backend triton runs the network on the Triton server (its own devices): device=cuda is for local \
                 inference; use device=auto or cpu"
                    .into(),
            ));
        }
        (b, Device::Cpu) => return gpu_only(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip() {
        for k in BackendKind::ALL {
            assert_eq!(k.as_str().parse::<BackendKind>().unwrap(), k);
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!("TRT".parse::<BackendKind>().unwrap(), BackendKind::TensorRt);
        assert_eq!("ort-trt".parse::<BackendKind>().unwrap(), BackendKind::OnnxRuntimeTensorRt);
        assert_eq!("OV".parse::<BackendKind>().unwrap(), BackendKind::OpenVino);
        let e = "tvm".parse::<BackendKind>().unwrap_err().to_string();
        assert!(e.contains("tvm") && e.contains("onnxruntime-tensorrt") && e.contains("openvino"), "{e}");
    }

    #[test]
    fn device_names() {
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert_eq!("CPU".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("gpu".parse::<Device>().unwrap(), Device::Cuda);
        assert!("tpu".parse::<Device>().is_err());
    }

    #[test]
    fn fallback_order() {
        use Attempt::*;
        use Provider::*;
        assert_eq!(plan(BackendKind::OnnxRuntime, Device::Auto).unwrap(), vec![Ort(Cuda), Ort(Cpu)]);
        assert_eq!(
            plan(BackendKind::OnnxRuntimeTensorRt, Device::Auto).unwrap(),
            vec![Ort(TensorRt), Ort(Cuda), Ort(Cpu)]
        );
        // An explicit device does not fall back.
        assert_eq!(plan(BackendKind::OnnxRuntimeTensorRt, Device::Cuda).unwrap(), vec![Ort(TensorRt)]);
        assert_eq!(plan(BackendKind::OnnxRuntimeCuda, Device::Cuda).unwrap(), vec![Ort(Cuda)]);
        assert_eq!(plan(BackendKind::OnnxRuntime, Device::Cpu).unwrap(), vec![Ort(Cpu)]);
        // Native TensorRT never falls back to ONNX Runtime.
        assert_eq!(plan(BackendKind::TensorRt, Device::Auto).unwrap(), vec![NativeTensorRt]);
        for b in [BackendKind::OnnxRuntimeCuda, BackendKind::OnnxRuntimeTensorRt, BackendKind::TensorRt] {
            let e = plan(b, Device::Cpu).unwrap_err().to_string();
            assert!(e.contains("CUDA devices only"), "{e}");
        }
        // OpenVINO: auto falls back to ONNX Runtime's CPU provider, cpu does not, cuda is refused.
        assert_eq!(plan(BackendKind::OpenVino, Device::Auto).unwrap(), vec![OpenVino, Ort(Cpu)]);
        assert_eq!(plan(BackendKind::OpenVino, Device::Cpu).unwrap(), vec![OpenVino]);
        let e = plan(BackendKind::OpenVino, Device::Cuda).unwrap_err().to_string();
        assert!(e.contains("does not run on CUDA") && e.contains("openvino-device"), "{e}");
        // Triton: the server, never a local fallback; local CUDA refused.
        assert_eq!(plan(BackendKind::Triton, Device::Auto).unwrap(), vec![Triton]);
        assert_eq!(plan(BackendKind::Triton, Device::Cpu).unwrap(), vec![Triton]);
        assert!(plan(BackendKind::Triton, Device::Cuda).unwrap_err().to_string().contains("Triton server"));
    }
}
