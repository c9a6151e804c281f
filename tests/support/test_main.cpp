// doctest entry point for every test executable. An executable built with TG_TEST_CUDA=1
// holds CUDA tests: without a usable GPU it prints why and exits with 77 (CTest: skipped).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "tests/support/test_support.h"

int main(int argc, char** argv) {
  if (tg::test::cuda_tests_requested() && !tg::cuda_is_available()) {
    std::printf("%s: no CUDA device in this process; all CUDA tests of this executable SKIPPED\n",
                argv[0]);
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
