"""How a model runs, apart from which model it is: the device and precision
(:mod:`.device`), the compiled-model cache (:mod:`.compiled`) with its two backends,
OpenVINO (:mod:`.openvino`) and TorchScript (:mod:`.torchscript`), and where compiled
models live (:mod:`.cache`). Nothing is imported here: opening an index must not pay for
torch or OpenVINO."""
