#include "tasks/retrieval.h"

#include "core/error.h"
#include "core/parallel.h"
#include "tasks/cache.h"
#include "tasks/dataset.h"
#include "tasks/task_io.h"

namespace lra::tasks::retrieval {

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool decode_field(std::string_view field, std::string& out, std::string& error) {
  out.clear();
  bool literal = field.size() >= 3 && field[0] == 'b' && (field[1] == '\'' || field[1] == '"') &&
                 field.back() == field[1];
  if (!literal) {
    out.assign(field);
    return true;
  }
  const char quote = field[1];
  std::string_view body = field.substr(2, field.size() - 3);
  out.reserve(body.size());
  for (std::size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c == quote) {
      error = fmt::format("bytes literal: unescaped {} at offset {}", quote, i + 2);
      return false;
    }
    if (c != '\\') {
      out += c;
      continue;
    }
    if (i + 1 >= body.size()) {
      error = "bytes literal ends with a lone backslash";
      return false;
    }
    char e = body[++i];
    switch (e) {
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': {
        int hi = i + 1 < body.size() ? hex_value(body[i + 1]) : -1;
        int lo = i + 2 < body.size() ? hex_value(body[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
          error = fmt::format("bytes literal: invalid \\x escape at offset {}", i + 1);
          return false;
        }
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {  // up to three octal digits, value mod 256 as Python
          int v = e - '0';
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k)
            v = v * 8 + (body[++i] - '0');
          out += static_cast<char>(v & 0xff);
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  return true;
}

namespace {

constexpr int retrieval_vocab = 257;

std::vector<Example> load_file(const std::string& path, int64_t max_len) {
  std::string text = read_file(path);
  LineReader reader(text);
  std::string_view line;
  std::vector<std::pair<int64_t, std::string_view>> lines;
  while (reader.next(line))
    if (!line.empty()) lines.emplace_back(reader.line_number(), line);
  LRA_CHECK(!lines.empty(), "{}: no examples", path);
  std::vector<Example> examples(lines.size());
  const int64_t n = static_cast<int64_t>(lines.size()), grain = 64;
  std::vector<std::string> errors(static_cast<std::size_t>((n + grain - 1) / grain));
  core::parallel_for(n, grain, [&](int64_t begin, int64_t end) {
    std::string& err = errors[static_cast<std::size_t>(begin / grain)];
    std::string doc, error;
    for (int64_t i = begin; i < end && err.empty(); ++i) {
      auto [number, text_line] = lines[static_cast<std::size_t>(i)];
      auto fields = split(text_line, '\t');
      if (fields.size() != 5) {
        err = fmt::format("{}:{}: expected 5 tab-separated fields (label, id1, id2, text1, text2), got {}", path,
                          number, fields.size());
        break;
      }
      std::string_view l = fields[0];
      int32_t label = -1;
      if (l == "0" || l == "0.0") label = 0;
      else if (l == "1" || l == "1.0") label = 1;
      if (label < 0) {
        err = fmt::format("{}:{}: label '{}' is not 0 or 1", path, number, std::string(l.substr(0, 20)));
        break;
      }
      auto& e = examples[static_cast<std::size_t>(i)];
      e.label = label;
      for (int k = 0; k < 2 && err.empty(); ++k) {
        if (!decode_field(fields[3 + static_cast<std::size_t>(k)], doc, error)) {
          err = fmt::format("{}:{}: text{}: {}", path, number, k + 1, error);
        } else if (doc.empty()) {
          err = fmt::format("{}:{}: text{} is empty", path, number, k + 1);
        } else {
          (k == 0 ? e.tokens : e.tokens2) = byte_tokens(doc, max_len);
        }
      }
    }
  });
  for (const auto& err : errors)
    if (!err.empty()) throw Error(err);
  return examples;
}

std::unique_ptr<Dataset> load(const YAML::Node& node, Split split, const std::string& context) {
  TaskSection section(node, context, common_task_keys());
  std::string dir = section.require_string("data_dir");
  int64_t max_len = section.get_int("max_len", 4000, 1, 1 << 30);
  const char* part = split == Split::train ? "train" : split == Split::val ? "eval" : "test";
  std::string path = fmt::format("{}/new_aan_pairs.{}.tsv", dir, part);
  CacheOptions cache{section.get_bool("cache", true), dir, section.get_string("cache_dir", "")};
  auto result = cached_load(cache, fmt::format("retrieval_{}", part),
                            fmt::format("retrieval loader v1 max_len={}", max_len), {path},
                            [&] { return load_file(path, max_len); });
  validate_examples(result.examples, 2, retrieval_vocab, true, path);
  return std::make_unique<VectorDataset>("retrieval", std::move(result.examples), 2, retrieval_vocab, true);
}

}  // namespace

LRA_REGISTER_TASK(TaskInfo{"retrieval", "Retrieval: AAN document pairs, byte level, 2 classes (new_aan_pairs.*.tsv)",
                           2, retrieval_vocab, 4000, true, load});

}  // namespace lra::tasks::retrieval
