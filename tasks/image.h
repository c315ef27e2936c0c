#pragma once
// Image (CIFAR-10, grayscale): the binary release (`data_batch_{1..5}.bin`,
// `test_batch.bin`), 3073-byte records: label byte, then 1024 R, 1024 G, 1024 B bytes
// (row-major 32x32). Token id = gray + 1 (1..256), so a black pixel is not padding.
#include <cstdint>

namespace lra::tasks::image {

constexpr int record_bytes = 3073;
constexpr int pixels = 1024;
constexpr int vocab_size = 257;

// Grayscale as LRA's pipeline computed it (TensorFlow's rgb_to_grayscale on uint8):
// in float32, y = 0.2989 r/255 + 0.5870 g/255 + 0.1140 b/255, then the uint8 conversion
// truncates y * 255.5 (saturating to [0, 255]).
uint8_t grayscale(uint8_t r, uint8_t g, uint8_t b);

}  // namespace lra::tasks::image
