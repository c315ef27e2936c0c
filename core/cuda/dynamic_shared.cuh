#pragma once
// The dynamic shared memory of a kernel, named once. The CPU emulation of kernels
// (tests/support/cuda_emulation.h) defines its own version before including kernel code.
#ifndef LRA_DYNAMIC_SHARED
#define LRA_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
#endif
