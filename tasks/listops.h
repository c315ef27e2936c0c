#pragma once
// ListOps: the official TSV format (`basic_{train,val,test}.tsv`, header `Source\tTarget`),
// the tokenizer (brackets `(` `)` dropped, `]` kept), the evaluator, and the LRA generator.
//
// Vocabulary (fixed; vocab_size 16):
//   0 padding, 1..10 digits 0..9 (id = digit + 1), 11 [MIN, 12 [MAX, 13 [MED, 14 [SM, 15 ]
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lra::tasks::listops {

constexpr int32_t pad_id = 0;
constexpr int32_t digit_id(int digit) { return digit + 1; }
constexpr int32_t min_id = 11, max_id = 12, med_id = 13, sm_id = 14, end_id = 15;
constexpr int vocab_size = 16;
constexpr int num_classes = 10;

// Word of a token id ("0".."9", "[MIN", ..., "]"); "<pad>" for 0.
std::string_view token_word(int32_t id);

// Splits a Source on spaces, drops "(" and ")", maps every other word to its id.
// Returns false and sets `error` on an unknown word.
bool tokenize(std::string_view source, std::vector<int32_t>& ids, std::string& error);

// Evaluates a token sequence in the prefix form `[OP args... ]` (a single digit is a
// valid expression). MIN, MAX, MED = integer part of the median (mean of the two middle
// values for an even count), SM = sum mod 10. Returns false and sets `error` when the
// sequence is not exactly one well-formed expression (operators need >= 1 argument).
bool try_evaluate(const int32_t* ids, std::size_t n, int& value, std::string& error);
int evaluate(const std::vector<int32_t>& ids);  // throws lra::Error when malformed

// The official Source string (LRA's nested-pair rendering with parentheses) of a
// well-formed token sequence: `[MAX 2 9 ]` -> `( ( ( [MAX 2 ) 9 ) ] )`.
std::string to_source(const int32_t* ids, std::size_t n);

struct GeneratorConfig {
  int64_t train = 96000, val = 2000, test = 2000;
  int max_depth = 10;       // nodes at this depth are always values
  int max_args = 10;        // operators take randint(2, max_args) arguments
  double value_p = 0.25;    // below max_depth a node is a value when u > value_p
  int64_t min_length = 500, max_length = 2000;  // kept when min < length < max
};

struct GeneratorStats {
  int64_t candidates = 0;        // trees drawn
  int64_t rejected_length = 0;   // outside (min_length, max_length)
  int64_t duplicates = 0;        // dropped by deduplication
};

// Draws candidate tree `index` of the stream `seed` (a pure function of both). Returns
// true and fills `ids` (prefix tokens, length counted as LRA counts it: operators +
// values + closing brackets) when the length is inside the bounds.
bool generate_candidate(uint64_t seed, uint64_t index, const GeneratorConfig& config,
                        std::vector<int32_t>& ids);

// `count` distinct accepted trees, in candidate order (deterministic for any thread count).
std::vector<std::vector<int32_t>> generate(uint64_t seed, int64_t count, const GeneratorConfig& config,
                                           GeneratorStats* stats = nullptr);

// Writes the official TSV layout (header `Source\tTarget`, CRLF line ends as Python's
// csv writer produces) with labels from the evaluator.
void write_tsv(const std::string& path, const std::vector<std::vector<int32_t>>& trees,
               std::size_t begin, std::size_t end);

// Generates train/val/test into `out_dir` (basic_{train,val,test}.tsv).
GeneratorStats generate_files(const std::string& out_dir, uint64_t seed, const GeneratorConfig& config);

}  // namespace lra::tasks::listops
