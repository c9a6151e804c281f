// JSON read from files (safetensors headers, checkpoint metadata) parsed with a nesting limit:
// nlohmann's parser is iterative, but printing or comparing a value recurses once per level, so
// a file that nests 200,000 arrays would overflow the stack later. Deeper input is an IoError.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace tg::nn {

// More than enough for every format tapegrad reads (a safetensors header nests 3 levels).
constexpr int kMaxJsonDepth = 64;

// Parses `text`; IoError "<what> is not valid JSON (...)" or "<what> nests deeper than ..."
// for deeper than `max_depth` arrays/objects.
nlohmann::json parse_bounded_json(std::string_view text, const std::string& what, int max_depth = kMaxJsonDepth);

}  // namespace tg::nn
