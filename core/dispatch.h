#pragma once
// Runs a generic lambda with T = float or double according to a runtime dtype.
#include "core/device.h"

#define LRA_DISPATCH_FLOAT(dtype, T, ...)          \
  do {                                             \
    if ((dtype) == ::lra::core::DType::f32) {      \
      using T = float;                             \
      __VA_ARGS__();                               \
    } else {                                       \
      using T = double;                            \
      __VA_ARGS__();                               \
    }                                              \
  } while (0)
