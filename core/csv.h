#pragma once
// CSV files of results: one row per measurement, header first, each row written whole
// and flushed, so a killed run leaves only whole rows; reopening continues the file.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace lra::core {

class CsvWriter {
 public:
  // Opens `path` for appending rows with these columns. A new (or empty) file gets the
  // header. An existing file must have exactly this header (lra::Error naming the file
  // otherwise); a trailing partial line left by a killed writer is cut off.
  CsvWriter(std::string path, std::vector<std::string> columns);
  ~CsvWriter();
  CsvWriter(const CsvWriter&) = delete;
  CsvWriter& operator=(const CsvWriter&) = delete;

  // Writes one row (values in column order, or by column name) and flushes it to disk.
  void write_row(const std::vector<std::string>& values);
  void write_row(const std::map<std::string, std::string>& values);
  const std::vector<std::string>& columns() const { return columns_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::string> columns_;
  std::FILE* file_ = nullptr;
};

struct CsvTable {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
  // Index of a column; throws lra::Error naming the file and column when absent.
  std::size_t column(const std::string& name) const;
  std::string path;
};

// Reads a whole CSV file (RFC 4180 quoting). Throws lra::Error naming file and line on a
// row whose field count differs from the header's.
CsvTable read_csv(const std::string& path);

// Quotes a field when it holds a comma, quote or newline.
std::string csv_escape(const std::string& field);
// Formats a double with enough digits to round-trip ("%.9g"); NaN as "nan".
std::string csv_number(double value);

}  // namespace lra::core
