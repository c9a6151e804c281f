// --memory-report's walk of the graph (apps/train_vit/memory_report.h): per node kind, the nodes'
// own saved bytes and the storages each once — exact byte counts on a graph where two nodes keep
// one storage — and the nodes' saved storages behind it (Node::saved_storages).
#include <doctest/doctest.h>

#include "apps/train_vit/memory_report.h"
#include "autograd/engine.h"
#include "ops/elementwise.h"
#include "ops/matmul/linear.h"
#include "ops/matmul/matmul.h"
#include "ops/reduce.h"
#include "tests/support/op_checks.h"

using namespace tg;

TEST_CASE("the memory report's walk counts a storage that two nodes keep once, under the first kind met") {
  const Tensor x = test::random_tensor({5, 4}, 1), w1 = test::random_param({4, 3}, 2), w2 = test::random_param({4, 6}, 3);
  // Both matmuls keep x (w1 and w2 too: the weight gradients need x, the input's none).
  const Tensor loss = add(sum(matmul(x, w1)), sum(matmul(x, w2)));
  const std::vector<train::SavedBytes> groups = train::saved_bytes_by_kind(loss);
  const auto matmuls = std::find_if(groups.begin(), groups.end(),
                                    [](const train::SavedBytes& g) { return g.kind == "MatmulBackward"; });
  REQUIRE(matmuls != groups.end());
  CHECK(matmuls->nodes == 2);
  CHECK(matmuls->bytes == 2 * 80);        // each node counts x: 5·4 floats
  CHECK(matmuls->unique_bytes == 80);     // once in all
  int64_t unique = 0;
  for (const train::SavedBytes& g : groups) unique += g.unique_bytes;
  CHECK(unique == 80);                    // the sums save nothing
  const std::string table = train::format_saved_bytes(groups, 1000);
  CHECK(table.find("each once") != std::string::npos);
}

TEST_CASE("saved_storages: what saved_bytes counts, as storages — a linear's X through its strategy, not W") {
  const Tensor x = test::random_tensor({2, 3, 4}, 4), w = test::random_param({5, 4}, 5), b = test::random_param({5}, 6);
  const Tensor y = linear(x, w, b);
  std::vector<const Storage*> storages;
  y.grad_fn()->saved_storages(storages);
  REQUIRE(storages.size() == 1);
  CHECK(storages[0] == x.storage().get());
  CHECK(y.grad_fn()->saved_bytes() == storages[0]->nbytes());
  // The default: each saved tensor's storage once (exp keeps its output).
  Tensor a = test::random_param({3, 3}, 7);
  const Tensor e = exp(a);
  storages.clear();
  e.grad_fn()->saved_storages(storages);
  REQUIRE(storages.size() == 1);
  CHECK(storages[0] == e.storage().get());
  backward(sum(e));
  storages.clear();
  e.grad_fn()->saved_storages(storages);
  CHECK(storages.empty());  // released after backward
}
