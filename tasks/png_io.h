#pragma once
// 8-bit greyscale PNG reading and writing through libpng. Reading converts what the
// Pathfinder releases could contain (1/2/4-bit grey, 16-bit, palette, RGB, alpha) to
// 8-bit grey; every libpng failure becomes an lra::Error naming the file.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lra::tasks {

struct GrayImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // row-major, width * height
};

// Decodes PNG bytes; `name` (usually the file path) is used in error messages.
GrayImage decode_png_gray8(std::string_view bytes, const std::string& name);
// Reads and decodes a PNG file.
GrayImage read_png_gray8(const std::string& path);

// Encodes an 8-bit greyscale image (pixels.size() == width * height).
std::string encode_png_gray8(int width, int height, const uint8_t* pixels, const std::string& name);
// Writes an 8-bit greyscale PNG file (plain write: callers that need atomicity rename).
void write_png_gray8(const std::string& path, int width, int height, const uint8_t* pixels);

}  // namespace lra::tasks
