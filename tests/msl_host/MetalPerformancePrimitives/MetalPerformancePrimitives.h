// Host stand-in: the flash-decode kernels use nothing from Metal Performance Primitives.
#pragma once
namespace mpp::tensor_ops {}
