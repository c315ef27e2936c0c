#pragma once
// Runs a generic lambda with T = float or double according to a runtime dtype. bf16 is a
// storage type that only some ops take (they test for it before dispatching); everywhere
// else it is an error naming the function that was handed a bf16 tensor.
#include "core/device.h"
#include "core/error.h"

#define LRA_DISPATCH_FLOAT(dtype, T, ...)                                                   \
  do {                                                                                      \
    if ((dtype) == ::lra::core::DType::f32) {                                               \
      using T = float;                                                                      \
      __VA_ARGS__();                                                                        \
    } else if ((dtype) == ::lra::core::DType::f64) {                                        \
      using T = double;                                                                     \
      __VA_ARGS__();                                                                        \
    } else {                                                                                \
      ::lra::fail("{}: bf16 tensors are not supported here (f32 or f64 only; bf16 is a "    \
                  "storage type of the fused softmax attention and of dtype conversions)", \
                  __func__);                                                                \
    }                                                                                       \
  } while (0)
