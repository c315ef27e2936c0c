#include "core/csv.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace lra::core {
namespace {

std::vector<std::vector<std::string>> parse_records(const std::string& text, const std::string& path,
                                                    std::vector<int>* lines) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> record;
  std::string field;
  bool quoted = false, field_started = false;
  int line = 1, record_line = 1;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      continue;
    }
    if (c == '"' && field.empty()) {
      quoted = true;
      field_started = true;
    } else if (c == ',') {
      record.push_back(field);
      field.clear();
      field_started = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (field_started || !field.empty() || !record.empty()) {
        record.push_back(field);
        records.push_back(record);
        if (lines) lines->push_back(record_line);
      }
      record.clear();
      field.clear();
      field_started = false;
      ++line;
      record_line = line;
    } else {
      field += c;
      field_started = true;
    }
  }
  LRA_CHECK(!quoted, "{}:{}: unterminated quoted field", path, record_line);
  if (field_started || !field.empty() || !record.empty()) {
    record.push_back(field);
    records.push_back(record);
    if (lines) lines->push_back(record_line);
  }
  return records;
}

std::string join_row(const std::vector<std::string>& values) {
  std::string line;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) line += ',';
    line += csv_escape(values[i]);
  }
  return line + '\n';
}

}  // namespace

std::string csv_escape(const std::string& field) {
  if (field.find_first_of(",\"\n\r") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

std::string csv_number(double value) {
  if (std::isnan(value)) return "nan";
  return fmt::format("{:.9g}", value);
}

CsvWriter::CsvWriter(std::string path, std::vector<std::string> columns)
    : path_(std::move(path)), columns_(std::move(columns)) {
  namespace fs = std::filesystem;
  fs::path p(path_);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  bool write_header = true;
  if (fs::exists(p) && fs::file_size(p) > 0) {
    std::ifstream in(p, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Cut a trailing partial row (a writer killed mid-line never wrote its newline).
    std::size_t last_newline = text.rfind('\n');
    std::size_t keep = last_newline == std::string::npos ? 0 : last_newline + 1;
    if (keep != text.size()) {
      fs::resize_file(p, keep);
      text.resize(keep);
    }
    if (!text.empty()) {
      auto records = parse_records(text.substr(0, text.find('\n') + 1), path_, nullptr);
      LRA_CHECK(!records.empty() && records[0] == columns_,
                "{}: existing CSV header does not match this writer's columns ({}); use another "
                "output file",
                path_, join_row(columns_).substr(0, join_row(columns_).size() - 1));
      write_header = false;
    }
  }
  file_ = std::fopen(path_.c_str(), "ab");
  LRA_CHECK(file_ != nullptr, "{}: cannot open for writing", path_);
  if (write_header) {
    std::string header = join_row(columns_);
    std::fwrite(header.data(), 1, header.size(), file_);
    std::fflush(file_);
  }
}

CsvWriter::~CsvWriter() {
  if (file_) std::fclose(file_);
}

void CsvWriter::write_row(const std::vector<std::string>& values) {
  LRA_CHECK(values.size() == columns_.size(), "{}: row has {} values for {} columns", path_,
            values.size(), columns_.size());
  std::string line = join_row(values);
  // One write per row, then flush + fsync: a crash leaves whole rows only.
  LRA_CHECK(std::fwrite(line.data(), 1, line.size(), file_) == line.size(), "{}: write failed",
            path_);
  LRA_CHECK(std::fflush(file_) == 0, "{}: flush failed", path_);
  fsync(fileno(file_));
}

void CsvWriter::write_row(const std::map<std::string, std::string>& values) {
  std::vector<std::string> row;
  for (const auto& column : columns_) {
    auto it = values.find(column);
    LRA_CHECK(it != values.end(), "{}: row has no value for column '{}'", path_, column);
    row.push_back(it->second);
  }
  LRA_CHECK(values.size() == columns_.size(), "{}: row has {} named values for {} columns", path_,
            values.size(), columns_.size());
  write_row(row);
}

std::size_t CsvTable::column(const std::string& name) const {
  for (std::size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return i;
  fail("{}: no column '{}'", path, name);
}

CsvTable read_csv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LRA_CHECK(in.good(), "{}: cannot open", path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<int> lines;
  auto records = parse_records(text, path, &lines);
  CsvTable table;
  table.path = path;
  if (records.empty()) return table;
  table.columns = records[0];
  for (std::size_t i = 1; i < records.size(); ++i) {
    LRA_CHECK(records[i].size() == table.columns.size(), "{}:{}: {} fields, header has {}", path,
              lines[i], records[i].size(), table.columns.size());
    table.rows.push_back(std::move(records[i]));
  }
  return table;
}

}  // namespace lra::core
