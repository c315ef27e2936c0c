#include "tasks/png_io.h"

#include <png.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "tasks/task_io.h"

namespace lra::tasks {

namespace {

// libpng reports errors by calling our handler, which records the message and
// longjmps back to the setjmp in the function that called libpng. Those functions
// (read_header, read_rows, write_all) hold only trivially destructible locals, so the
// jump skips no destructor; every C++ object lives in their callers.
struct PngState {
  const uint8_t* data = nullptr;  // reading: the encoded bytes
  std::size_t size = 0;
  std::size_t pos = 0;
  std::string* out = nullptr;  // writing: the destination buffer
  char message[256] = {};
};

void on_error(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof state->message, "%s", message ? message : "libpng error");
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {
}  // warnings (e.g. bad CRC in ancillary chunks) ignored

void read_callback(png_structp png, png_bytep out, png_size_t n) {
  auto* state = static_cast<PngState*>(png_get_io_ptr(png));
  if (state->size - state->pos < n) png_error(png, "unexpected end of data (truncated file)");
  std::memcpy(out, state->data + state->pos, n);
  state->pos += n;
}

void write_callback(png_structp png, png_bytep data, png_size_t n) {
  auto* state = static_cast<PngState*>(png_get_io_ptr(png));
  bool failed = false;
  try {
    state->out->append(reinterpret_cast<const char*>(data), n);
  } catch (...) {
    failed = true;
  }
  // Outside the handler: png_error longjmps, which must not leave a catch block.
  if (failed) png_error(png, "out of memory while encoding");
}

void flush_callback(png_structp) {}

struct Header {
  png_uint_32 width = 0, height = 0;
  int channels = 0, bit_depth = 0;
  std::size_t rowbytes = 0;
};

// Reads the header and sets the transforms to 8-bit grey or RGB. Only trivial locals.
bool read_header(png_structp png, png_infop info, Header* header) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  int color_type = png_get_color_type(png, info);
  int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16) png_set_scale_16(png);
  if (color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  header->width = png_get_image_width(png, info);
  header->height = png_get_image_height(png, info);
  header->channels = png_get_channels(png, info);
  header->bit_depth = png_get_bit_depth(png, info);
  header->rowbytes = png_get_rowbytes(png, info);
  return true;
}

bool read_rows(png_structp png, png_infop info, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, info);
  return true;
}

bool write_all(png_structp png, png_infop info, int width, int height, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

struct ReadGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~ReadGuard() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  }
};

struct WriteGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~WriteGuard() {
    if (png) png_destroy_write_struct(&png, info ? &info : nullptr);
  }
};

}  // namespace

GrayImage decode_png_gray8(std::string_view bytes, const std::string& name) {
  LRA_CHECK(
      bytes.size() >= 8 && png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8) == 0,
      "{}: not a PNG file (bad signature, {} bytes)", name, bytes.size());
  PngState state;
  state.data = reinterpret_cast<const uint8_t*>(bytes.data());
  state.size = bytes.size();
  ReadGuard guard;
  guard.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, on_error, on_warning);
  LRA_CHECK(guard.png != nullptr, "{}: libpng could not create a reader", name);
  guard.info = png_create_info_struct(guard.png);
  LRA_CHECK(guard.info != nullptr, "{}: libpng could not create an info struct", name);
  png_set_read_fn(guard.png, &state, read_callback);

  Header header;
  if (!read_header(guard.png, guard.info, &header))
    fail("{}: cannot decode PNG: {}", name, state.message);
  LRA_CHECK((header.channels == 1 || header.channels == 3) && header.bit_depth == 8,
            "{}: PNG layout not convertible to 8-bit grey ({} channels, {} bits)", name,
            header.channels, header.bit_depth);
  const std::size_t channels = static_cast<std::size_t>(header.channels);
  LRA_CHECK(header.width > 0 && header.height > 0 && header.rowbytes == header.width * channels,
            "{}: unexpected PNG geometry {}x{} (row bytes {})", name, header.width, header.height,
            header.rowbytes);
  GrayImage image;
  image.width = static_cast<int>(header.width);
  image.height = static_cast<int>(header.height);
  const std::size_t count = static_cast<std::size_t>(header.width) * header.height;
  std::vector<uint8_t> colour;
  uint8_t* target = nullptr;
  if (channels == 1) {
    image.pixels.resize(count);
    target = image.pixels.data();
  } else {
    colour.resize(count * 3);
    target = colour.data();
  }
  std::vector<png_bytep> rows(header.height);
  for (png_uint_32 r = 0; r < header.height; ++r) rows[r] = target + r * header.rowbytes;
  if (!read_rows(guard.png, guard.info, rows.data()))
    fail("{}: cannot decode PNG: {}", name, state.message);
  if (channels == 3) {
    // Colour to grey with the ITU-R 601 weights the Image task uses, on the stored
    // (gamma-encoded) values, as LRA's preprocessing did.
    image.pixels.resize(count);
    for (std::size_t p = 0; p < count; ++p) {
      double y = 0.2989 * colour[3 * p] + 0.5870 * colour[3 * p + 1] + 0.1140 * colour[3 * p + 2];
      image.pixels[p] = static_cast<uint8_t>(std::min(255.0, std::round(y)));
    }
  }
  return image;
}

GrayImage read_png_gray8(const std::string& path) {
  return decode_png_gray8(read_file(path), path);
}

std::string encode_png_gray8(int width, int height, const uint8_t* pixels,
                             const std::string& name) {
  LRA_CHECK(width > 0 && height > 0, "{}: cannot encode a {}x{} image", name, width, height);
  std::string out;
  PngState state;
  state.out = &out;
  WriteGuard guard;
  guard.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, on_error, on_warning);
  LRA_CHECK(guard.png != nullptr, "{}: libpng could not create a writer", name);
  guard.info = png_create_info_struct(guard.png);
  LRA_CHECK(guard.info != nullptr, "{}: libpng could not create an info struct", name);
  png_set_write_fn(guard.png, &state, write_callback, flush_callback);
  std::vector<png_bytep> rows(static_cast<std::size_t>(height));
  for (int r = 0; r < height; ++r)
    rows[static_cast<std::size_t>(r)] =
        const_cast<png_bytep>(pixels + static_cast<std::size_t>(r) * width);
  if (!write_all(guard.png, guard.info, width, height, rows.data()))
    fail("{}: cannot encode PNG: {}", name, state.message);
  return out;
}

void write_png_gray8(const std::string& path, int width, int height, const uint8_t* pixels) {
  std::string bytes = encode_png_gray8(width, height, pixels, path);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  LRA_CHECK(f != nullptr, "{}: cannot open for writing ({})", path, std::strerror(errno));
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  ok = (std::fclose(f) == 0) && ok;
  LRA_CHECK(ok, "{}: write failed", path);
}

}  // namespace lra::tasks
