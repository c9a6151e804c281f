// load_safetensors under a few thousand deterministic mutations of a valid file (header length
// extremes, numbers of the JSON header replaced by extremes, truncations, bit flips): each
// mutant loads or raises tg::IoError (tests/support/fuzz.h).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "nn/safetensors.h"
#include "tests/support/fuzz.h"

using namespace tg;

TEST_CASE("fuzz: safetensors files load or raise IoError") {
  const std::string path =
      (std::filesystem::temp_directory_path() / detail::concat("tapegrad-fuzz-", ::getpid(), ".safetensors")).string();
  nn::save_safetensors(path,
                       {{"blocks.0.weight", arange(0, 12, 1, DType::f32).raw_reshape({3, 4})},
                        {"blocks.0.bias", full({3}, 0.5, DType::bf16)},
                        {"step", full({1}, 7, DType::i64)}},
                       {{"format", "pt"}, {"epoch", "3"}});
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> valid((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  REQUIRE(valid.size() > 8);
  size_t header = 0;
  for (int i = 0; i < 8; ++i) header |= size_t{valid[static_cast<size_t>(i)]} << (8 * i);
  const std::string mutant = path + ".mutant";
  const int count = 3000;
  const test::FuzzOutcome o = test::fuzz_reader(valid, mutant, count, [](const std::string& p) { nn::load_safetensors(p); },
                                                {{0, 8, false}, {0, 4, false}, {4, 4, false}}, 8, 8 + header);
  MESSAGE(o.loaded << " of " << count << " mutants loaded, " << o.rejected << " rejected with IoError");
  CHECK(o.loaded + o.rejected == count);
  CHECK(o.rejected > count / 2);
  std::filesystem::remove(path);
  std::filesystem::remove(mutant);
}
