// parse_bounded_json: nlohmann's DOM parser with a callback that stops at the depth limit.
#include "nn/bounded_json.h"

#include "core/error.h"

namespace tg::nn {

nlohmann::json parse_bounded_json(std::string_view text, const std::string& what, int max_depth) {
  const auto limit = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    const bool opens = event == nlohmann::json::parse_event_t::object_start ||
                       event == nlohmann::json::parse_event_t::array_start;
    // `depth` counts the containers around this one; this one makes depth + 1 levels.
    TG_CHECK(!opens || depth < max_depth, IoError, what, " nests deeper than ", max_depth,
             " JSON levels (corrupt or hostile file)");
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), limit);
  } catch (const nlohmann::json::exception& e) {
    TG_THROW(IoError, what, " is not valid JSON (", e.what(), ")");
  }
}

}  // namespace tg::nn
