// Deterministic mutation fuzzing of file readers: mutation i of a valid file is a pure function
// of (file, i) — a truncation, a few bit flips, a header field set to an extreme, a number in
// a JSON header replaced by an extreme, or inserted / removed bytes — and fuzz_reader checks
// that the reader either loads each mutant or throws tg::IoError: no other exception, no
// tg::OutOfMemoryError (a small file must never need much memory), no crash, no hang.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace tg::test {

// A fixed-width integer field of the file's header: where it is and how it is stored.
struct HeaderField {
  size_t offset;
  size_t width;  // 4 or 8 bytes
  bool big_endian;
};

inline void store(std::vector<uint8_t>& bytes, const HeaderField& f, uint64_t value) {
  for (size_t i = 0; i < f.width && f.offset + i < bytes.size(); ++i) {
    const size_t shift = 8 * (f.big_endian ? f.width - 1 - i : i);
    bytes[f.offset + i] = static_cast<uint8_t>(value >> shift);
  }
}

// Mutation `index` of `valid`. `fields` are the header's integer fields; `text_begin`..`text_end`
// is a textual (JSON) part whose numbers are replaced by extremes (empty range: none).
inline std::vector<uint8_t> mutate(const std::vector<uint8_t>& valid, uint64_t index,
                                   const std::vector<HeaderField>& fields, size_t text_begin = 0, size_t text_end = 0) {
  std::mt19937_64 random(index * 0x9E3779B97F4A7C15ull + 1);
  std::vector<uint8_t> bytes = valid;
  const size_t n = bytes.size();
  auto pick = [&](size_t bound) { return static_cast<size_t>(random() % std::max<size_t>(bound, 1)); };
  static const uint64_t kExtremes[] = {0, 1, 2, 0x7f, 0xff, 0x7fffffffull, 0x80000000ull, 0xffffffffull,
                                       0x100000000ull, 0x7fffffffffffffffull, 0x8000000000000000ull,
                                       0xffffffffffffffffull, 0x4000000000009000ull};
  static const char* const kNumbers[] = {"-1", "0", "1e30", "192.9", "-9223372036854775808", "9223372036854775807",
                                         "18446744073709551615", "4611686018427424768", "99999999999999999999",
                                         "[[[[1]]]]", "\"1\"", "null", "{}"};
  switch (index % 5) {
    case 0:  // truncation, mostly inside the header
      bytes.resize(index % 3 == 0 ? pick(n) : pick(std::min<size_t>(n, 64)));
      break;
    case 1:  // 1 to 8 bit flips
      for (size_t k = 0, flips = 1 + pick(8); k < flips && n > 0; ++k) {
        const size_t at = index % 2 == 0 ? pick(std::min<size_t>(n, 64)) : pick(n);
        bytes[at] ^= static_cast<uint8_t>(1u << pick(8));
      }
      break;
    case 2:  // a header field at an extreme value, or just off the valid one
      if (!fields.empty()) {
        const HeaderField& f = fields[pick(fields.size())];
        uint64_t value = kExtremes[pick(std::size(kExtremes))];
        if (random() % 3 == 0) {
          value = 0;
          for (size_t i = 0; i < f.width && f.offset + i < n; ++i)
            value |= uint64_t{bytes[f.offset + i]} << (8 * (f.big_endian ? f.width - 1 - i : i));
          value += random() % 2 ? 1 : static_cast<uint64_t>(-1);
        }
        store(bytes, f, value);
      }
      break;
    case 3: {  // a number of the textual header replaced
      std::vector<std::pair<size_t, size_t>> numbers;
      for (size_t i = text_begin; i < std::min(text_end, n);) {
        if (std::isdigit(bytes[i])) {
          size_t j = i;
          while (j < text_end && std::isdigit(bytes[j])) ++j;
          numbers.emplace_back(i, j);
          i = j;
        } else {
          ++i;
        }
      }
      if (numbers.empty()) {
        bytes.resize(pick(n));
        break;
      }
      const auto [from, to] = numbers[pick(numbers.size())];
      const std::string number = kNumbers[pick(std::size(kNumbers))];
      bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(from), bytes.begin() + static_cast<std::ptrdiff_t>(to));
      bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(from), number.begin(), number.end());
      break;
    }
    default: {  // bytes inserted or removed somewhere
      const size_t at = pick(n + 1), count = 1 + pick(16);
      if (random() % 2) {
        for (size_t k = 0; k < count; ++k) bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), static_cast<uint8_t>(random()));
      } else {
        bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                    bytes.begin() + static_cast<std::ptrdiff_t>(std::min(n, at + count)));
      }
    }
  }
  return bytes;
}

struct FuzzOutcome {
  int loaded = 0, rejected = 0;
};

// Writes mutations 0..count-1 of `valid` to `path` in turn and calls `load(path)` on each.
inline FuzzOutcome fuzz_reader(const std::vector<uint8_t>& valid, const std::string& path, int count,
                               const std::function<void(const std::string&)>& load,
                               const std::vector<HeaderField>& fields, size_t text_begin = 0, size_t text_end = 0) {
  FuzzOutcome outcome;
  for (int i = 0; i < count; ++i) {
    const std::vector<uint8_t> bytes = mutate(valid, static_cast<uint64_t>(i), fields, text_begin, text_end);
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    const auto start = std::chrono::steady_clock::now();
    std::string failure;
    try {
      load(path);
      ++outcome.loaded;
    } catch (const OutOfMemoryError& e) {
      failure = std::string("OutOfMemoryError for a small file: ") + e.what();
    } catch (const IoError&) {
      ++outcome.rejected;
    } catch (const std::exception& e) {
      failure = std::string("not an IoError: ") + e.what();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds > 5) failure = "took " + std::to_string(seconds) + " s (a hang?)";
    if (!failure.empty()) {
      CAPTURE(i);
      FAIL_CHECK(failure);
    }
  }
  return outcome;
}

}  // namespace tg::test
