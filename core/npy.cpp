// .npy reader/writer. The header is a Python dict literal, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and ended by '\n' so that the data starts on a 64-byte boundary.
#include "core/npy.h"

#include <bit>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/error.h"

namespace lra::core {
namespace {

static_assert(std::endian::native == std::endian::little, "lra's .npy I/O assumes a little-endian host");

constexpr char magic[] = "\x93NUMPY";
constexpr std::size_t magic_len = 6;

// A tiny scanner over the header dict.
struct Scanner {
  const std::string& text;
  const std::string& name;
  std::size_t pos = 0;

  [[noreturn]] void error(const std::string& what) const {
    fail("{}: malformed .npy header ({} at character {} of \"{}\")", name, what, pos, text);
  }
  void skip_space() {
    while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos;
  }
  bool peek(char c) {
    skip_space();
    return pos < text.size() && text[pos] == c;
  }
  void expect(char c) {
    if (!peek(c)) error(fmt::format("expected '{}'", c));
    ++pos;
  }
  std::string quoted() {
    skip_space();
    if (pos >= text.size() || (text[pos] != '\'' && text[pos] != '"')) error("expected a quoted string");
    char q = text[pos++];
    std::size_t end = text.find(q, pos);
    if (end == std::string::npos) error("unterminated string");
    std::string s = text.substr(pos, end - pos);
    pos = end + 1;
    return s;
  }
  std::string word() {
    skip_space();
    std::size_t start = pos;
    while (pos < text.size() && std::isalpha(static_cast<unsigned char>(text[pos]))) ++pos;
    return text.substr(start, pos - start);
  }
  int64_t integer() {
    skip_space();
    std::size_t start = pos;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) ++pos;
    if (start == pos) error("expected a dimension");
    if (pos - start > 15) error("dimension too large");
    // Python 2 era files may write long integers as 3L.
    int64_t v = std::stoll(text.substr(start, pos - start));
    if (pos < text.size() && text[pos] == 'L') ++pos;
    return v;
  }
};

struct Header {
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
};

Header parse_header(const std::string& text, const std::string& name) {
  Scanner s{text, name};
  Header h;
  bool have_descr = false, have_order = false, have_shape = false;
  s.expect('{');
  while (!s.peek('}')) {
    std::string key = s.quoted();
    s.expect(':');
    if (key == "descr") {
      h.descr = s.quoted();
      have_descr = true;
    } else if (key == "fortran_order") {
      std::string w = s.word();
      if (w != "True" && w != "False") s.error("fortran_order must be True or False");
      h.fortran = w == "True";
      have_order = true;
    } else if (key == "shape") {
      s.expect('(');
      while (!s.peek(')')) {
        h.shape.push_back(s.integer());
        if (!s.peek(')')) s.expect(',');
      }
      s.expect(')');
      have_shape = true;
    } else {
      s.error(fmt::format("unknown key '{}'", key));
    }
    if (!s.peek('}')) s.expect(',');
  }
  s.expect('}');
  s.skip_space();
  if (s.pos != text.size()) s.error("trailing characters after the dict");
  if (!have_descr) s.error("no 'descr' key");
  if (!have_order) s.error("no 'fortran_order' key");
  if (!have_shape) s.error("no 'shape' key");
  return h;
}

uint32_t read_le(const std::string& bytes, std::size_t at, std::size_t width) {
  uint32_t v = 0;
  for (std::size_t i = 0; i < width; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return v;
}

}  // namespace

Tensor parse_npy(const std::string& bytes, const std::string& name) {
  LRA_CHECK(bytes.size() >= magic_len + 2 && std::memcmp(bytes.data(), magic, magic_len) == 0,
            "{}: not a .npy file (missing the \\x93NUMPY magic string)", name);
  int major = static_cast<unsigned char>(bytes[6]), minor = static_cast<unsigned char>(bytes[7]);
  LRA_CHECK((major == 1 || major == 2 || major == 3) && minor == 0,
            "{}: unsupported .npy format version {}.{} (1.0, 2.0 and 3.0 are supported)", name, major,
            minor);
  std::size_t len_width = major == 1 ? 2 : 4;
  LRA_CHECK(bytes.size() >= 8 + len_width, "{}: truncated .npy header", name);
  std::size_t header_len = read_le(bytes, 8, len_width);
  std::size_t data_start = 8 + len_width + header_len;
  LRA_CHECK(bytes.size() >= data_start, "{}: truncated .npy header ({} header bytes announced, {} present)",
            name, header_len, bytes.size() - 8 - len_width);
  Header h = parse_header(bytes.substr(8 + len_width, header_len), name);
  LRA_CHECK(!h.fortran, "{}: fortran_order is True; lra reads C-order arrays only (save with "
            "numpy.ascontiguousarray)", name);
  DType dtype;
  if (h.descr == "<f4") dtype = DType::f32;
  else if (h.descr == "<f8") dtype = DType::f64;
  else if (h.descr == ">f4" || h.descr == ">f8")
    fail("{}: big-endian dtype '{}'; lra reads little-endian '<f4' or '<f8' only (use "
         "array.astype('<f4'))", name, h.descr);
  else
    fail("{}: dtype '{}' is not supported; lra reads float32 '<f4' or float64 '<f8'", name, h.descr);
  LRA_CHECK(h.shape.size() <= static_cast<std::size_t>(Shape::max_rank),
            "{}: rank {} array; lra tensors have rank <= {}", name, h.shape.size(), Shape::max_rank);
  Shape shape(h.shape);
  std::size_t want = static_cast<std::size_t>(shape.numel()) * dtype_size(dtype);
  std::size_t have = bytes.size() - data_start;
  LRA_CHECK(have >= want, "{}: truncated data: shape {} of {} needs {} bytes, the file holds {}", name,
            shape.str(), h.descr, want, have);
  LRA_CHECK(have == want, "{}: {} unexpected bytes after the data of shape {}", name, have - want,
            shape.str());
  Tensor t = Tensor::empty(shape, dtype);
  if (want) std::memcpy(t.raw_data(), bytes.data() + data_start, want);
  return t;
}

Tensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LRA_CHECK(in.good(), "{}: cannot open .npy file for reading", path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return parse_npy(buffer.str(), path);
}

std::string to_npy_bytes(const Tensor& t) {
  check_cpu(t, "to_npy_bytes");
  LRA_CHECK(t.defined(), "to_npy_bytes: tensor is undefined");
  LRA_CHECK(t.dtype() != DType::bf16, "to_npy_bytes: .npy has no bf16 type; convert to f32 first");
  std::string dims;
  for (int i = 0; i < t.rank(); ++i) dims += std::to_string(t.dim(i)) + (t.rank() == 1 ? "," : (i + 1 < t.rank() ? ", " : ""));
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}",
                                 t.dtype() == DType::f32 ? "<f4" : "<f8", dims);
  // Pad so that magic + version + length + header is a multiple of 64, ending with '\n'.
  int major = 1;
  std::size_t prefix = 10;
  std::size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  if (total - prefix > 65535) {
    major = 2;
    prefix = 12;
    total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  }
  std::size_t header_len = total - prefix;
  dict.append(header_len - dict.size() - 1, ' ');
  dict += '\n';
  std::string out(magic, magic_len);
  out += static_cast<char>(major);
  out += '\0';
  for (std::size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) out += static_cast<char>((header_len >> (8 * i)) & 0xff);
  out += dict;
  out.append(static_cast<const char*>(t.raw_data()), t.bytes());
  return out;
}

void write_npy(const std::string& path, const Tensor& t) {
  std::string bytes = to_npy_bytes(t);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    LRA_CHECK(out.good(), "{}: cannot open for writing", tmp);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    LRA_CHECK(out.good(), "{}: write failed", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  LRA_CHECK(!ec, "{}: cannot rename {} into place: {}", path, tmp, ec.message());
}

}  // namespace lra::core
