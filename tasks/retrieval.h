#pragma once
// Retrieval (ACL Anthology Network document matching): `new_aan_pairs.{train,eval,test}.tsv`,
// no header, five tab-separated fields: label, id1, id2, text1, text2. A text field
// written by Python as a bytes literal (b'...' or b"...") is unescaped.
#include <string>
#include <string_view>

namespace lra::tasks::retrieval {

// Decodes a field: a complete Python bytes literal b'...' / b"..." is unescaped
// (\\ \' \" \a \b \f \n \r \t \v, \ooo octal, \xhh; an unknown escape keeps the
// backslash, as Python does); any other field is returned unchanged. Returns false and
// sets `error` for a malformed literal (bad \x escape, unescaped closing quote inside,
// a trailing lone backslash).
bool decode_field(std::string_view field, std::string& out, std::string& error);

}  // namespace lra::tasks::retrieval
