// Shape and indexing ops on the CPU: forward values against plain-loop references, storage
// sharing of views, recording, gradcheck of every op (also on non-contiguous inputs), concat,
// index_select with duplicate and unordered indices, error messages; cast; and that the view
// names model code reaches are the recorded ops.
#include <doctest/doctest.h>

#include <functional>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "ops/reduce.h"
#include "ops/shape_ops.h"
#include "tests/support/op_checks.h"

using namespace tg;
using test::host_values;
using test::random_tensor;

namespace {

// Element [i, j, k] of a row-major [a, b, c] host copy.
struct Host3 {
  std::vector<double> v;
  int64_t b, c;
  explicit Host3(const Tensor& t) : v(host_values(t)), b(t.size(1)), c(t.size(2)) {}
  double operator()(int64_t i, int64_t j, int64_t k) const { return v[static_cast<size_t>((i * b + j) * c + k)]; }
};

Tensor f64_param(const Shape& shape, uint64_t seed) {
  Tensor t = random_tensor(shape, seed, -2, 2, DType::f64);
  t.set_requires_grad(true);
  return t;
}

// A 3-d shape with dims 0 and 2 swapped.
Shape transposed(const Shape& s) { return Shape{s[2], s[1], s[0]}; }

void check_gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs) {
  const auto result = gradcheck(fn, inputs);
  CHECK_MESSAGE(result.ok, result.message);
}

}  // namespace

TEST_CASE("views: values against loops, shared storage, shapes") {
  const Tensor x = random_tensor({2, 3, 4}, 1);
  const Host3 h(x);

  const Tensor t = transpose(x, 0, 2);  // [4, 3, 2]
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(t.shares_storage(x));
  const Host3 ht(t);
  const Tensor p = permute(x, {2, 0, 1});  // [4, 2, 3]
  CHECK(p.shares_storage(x));
  const Host3 hp(p);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 4; ++k) {
        CHECK(ht(k, j, i) == h(i, j, k));
        CHECK(hp(k, i, j) == h(i, j, k));
      }

  const Tensor f = flatten(x, 1, 2);
  CHECK(f.shape() == Shape{2, 12});
  CHECK(f.shares_storage(x));
  CHECK(host_values(f) == h.v);
  CHECK(flatten(x).shape() == Shape{24});
  CHECK(flatten(x, 0, 1).shape() == Shape{6, 4});
  CHECK(flatten(full({}, 3.0)).shape() == Shape{1});
  CHECK(reshape(x, {4, -1}).shape() == Shape{4, 6});
  CHECK(reshape(x, {4, -1}).shares_storage(x));
  CHECK(view(x, {6, 4}).shares_storage(x));
  CHECK(host_values(view(x, {6, 4})) == h.v);
  // A transposed tensor cannot be viewed flat: reshape copies, in the transposed order.
  const Tensor flat_t = reshape(t, {24});
  CHECK_FALSE(flat_t.shares_storage(x));
  CHECK(host_values(flat_t) == ht.v);

  const Tensor u = unsqueeze(x, -1);
  CHECK(u.shape() == Shape{2, 3, 4, 1});
  CHECK(unsqueeze(x, 1).shape() == Shape{2, 1, 3, 4});
  CHECK(squeeze(unsqueeze(x, 1), 1).shape() == x.shape());
  CHECK(squeeze(u, 3).shares_storage(x));

  const Tensor col = random_tensor({3, 1}, 2);
  const Tensor e = expand(col, {2, 3, 5});
  CHECK(e.shares_storage(col));
  const auto cv = host_values(col);
  const Host3 he(e);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 5; ++k) CHECK(he(i, j, k) == cv[static_cast<size_t>(j)]);

  CHECK(contiguous(x).same(x));
  const Tensor c = contiguous(t);
  CHECK(c.is_contiguous());
  CHECK_FALSE(c.shares_storage(x));
  CHECK(host_values(c) == ht.v);
}

TEST_CASE("slice, narrow and select: values against loops, shared storage") {
  const Tensor x = random_tensor({3, 5, 7}, 3);
  const Host3 h(x);
  const Tensor s = slice(x, 2, 1, 6, 2);  // k = 1, 3, 5
  CHECK(s.shape() == Shape{3, 5, 3});
  CHECK(s.shares_storage(x));
  const Host3 hs(s);
  const Tensor n = narrow(x, 1, 2, 3);  // j = 2, 3, 4
  CHECK(n.shape() == Shape{3, 3, 7});
  const Host3 hn(n);
  const Tensor sel = select(x, 1, -1);  // j = 4
  CHECK(sel.shape() == Shape{3, 7});
  CHECK(sel.shares_storage(x));
  const auto hsel = host_values(sel);
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t m = 0; m < 3; ++m) CHECK(hs(i, j, m) == h(i, j, 1 + 2 * m));
    for (int64_t m = 0; m < 3; ++m)
      for (int64_t k = 0; k < 7; ++k) CHECK(hn(i, m, k) == h(i, 2 + m, k));
    for (int64_t k = 0; k < 7; ++k) CHECK(hsel[static_cast<size_t>(i * 7 + k)] == h(i, 4, k));
  }
  CHECK(slice(x, 0, -2, 100).shape() == Shape{2, 5, 7});  // clamps like Python
}

TEST_CASE("ops record only when an input requires grad, with named nodes") {
  const Tensor plain = random_tensor({2, 3}, 4);
  CHECK_FALSE(transpose(plain, 0, 1).requires_grad());
  CHECK_FALSE(concat({plain, plain}, 0).requires_grad());
  const Tensor x = f64_param({2, 3}, 5);
  CHECK(transpose(x, 0, 1).grad_fn()->name() == "TransposeBackward");
  CHECK(slice(x, 1, 0, 2).grad_fn()->name() == "SliceBackward");
  CHECK(concat({plain.to(DType::f64), x}, 0).grad_fn()->name() == "ConcatBackward");
  CHECK(index_select(x, 0, from_vector<int64_t>({1, 1}, {2})).grad_fn()->name() == "IndexSelectBackward");
  CHECK(contiguous(x).same(x));  // nothing recorded: it is x
  CHECK(x.is_leaf());
}

TEST_CASE("gradcheck: every view and copy, on contiguous and non-contiguous inputs") {
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> fns = {
      {"reshape", [](const Tensor& t) { return reshape(t, {-1, 2}); }},
      {"view", [](const Tensor& t) { return view(contiguous(t), {3, 8}); }},
      {"flatten", [](const Tensor& t) { return flatten(t, 1); }},
      {"permute", [](const Tensor& t) { return permute(t, {1, 2, 0}); }},
      {"transpose", [](const Tensor& t) { return transpose(t, -1, 0); }},
      {"unsqueeze", [](const Tensor& t) { return unsqueeze(t, 2); }},
      {"squeeze", [](const Tensor& t) { return squeeze(unsqueeze(t, 0), 0); }},
      {"expand", [](const Tensor& t) { return expand(unsqueeze(t, 1), {t.size(0), 3, t.size(1), t.size(2)}); }},
      {"contiguous", [](const Tensor& t) { return contiguous(t); }},
      {"slice", [](const Tensor& t) { return slice(t, 1, 0, 3, 2); }},
      {"slice_negative", [](const Tensor& t) { return slice(t, -1, -3, 100); }},
      {"narrow", [](const Tensor& t) { return narrow(t, 2, 1, 2); }},
      {"select", [](const Tensor& t) { return select(t, 0, -1); }},
      {"unbind", [](const Tensor& t) { const auto p = unbind(t, 1); return concat({p[2], p[0]}, 0); }},  // p[1] unused
      {"unbind_all", [](const Tensor& t) { return concat(unbind(t, -1), 0); }},
  };
  Tensor x = f64_param({2, 3, 4}, 6);
  for (const auto& [name, fn] : fns) {
    CAPTURE(name);
    check_gradcheck([&](const std::vector<Tensor>& in) { return fn(in[0]); }, {x});
    // Non-contiguous input: the same op applied to a transposed (recorded) view of a leaf.
    Tensor leaf = f64_param({4, 3, 2}, 7);
    check_gradcheck([&](const std::vector<Tensor>& in) { return fn(transpose(in[0], 0, 2)); }, {leaf});
  }
}

TEST_CASE("expand backward sums over broadcast dims") {
  Tensor x = f64_param({3, 1}, 8);
  backward(expand(x, {2, 3, 4}), ones({2, 3, 4}, DType::f64));
  CHECK(host_values(x.grad()) == std::vector<double>{8, 8, 8});
}

TEST_CASE("slice backward puts the gradient where the slice was and zeros elsewhere") {
  Tensor x = f64_param({6}, 9);
  backward(slice(x, 0, 1, 6, 2), from_vector<double>({10, 20, 30}, {3}));
  CHECK(host_values(x.grad()) == std::vector<double>{0, 10, 0, 20, 0, 30});
}

TEST_CASE("unbind: views of every part, one backward node, zeros for parts without a gradient") {
  Tensor x = f64_param({2, 3, 4}, 10);
  const std::vector<Tensor> parts = unbind(x, 1);
  REQUIRE(parts.size() == 3);
  const Host3 h(x);
  for (int64_t j = 0; j < 3; ++j) {
    CHECK(parts[static_cast<size_t>(j)].shape() == Shape{2, 4});
    CHECK(parts[static_cast<size_t>(j)].raw_data() == static_cast<const char*>(x.raw_data()) + j * 4 * sizeof(double));
    CHECK(parts[static_cast<size_t>(j)].grad_fn() == parts[0].grad_fn());
  }
  CHECK(parts[0].grad_fn()->name() == "UnbindBackward");
  backward(parts[1], from_vector<double>({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4}));
  const Host3 g(x.grad());
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t k = 0; k < 4; ++k) {
      CHECK(g(i, 0, k) == 0);
      CHECK(g(i, 1, k) == static_cast<double>(i * 4 + k + 1));
      CHECK(g(i, 2, k) == 0);
    }
  CHECK_THROWS_WITH_AS(unbind(x, 3), "unbind: dim 3 is out of range for a tensor with 3 dimension(s): expected a value in [-3, 2]", IndexError);
}

TEST_CASE("concat over dims 0, 1 and -1: values against loops and gradcheck") {
  for (int64_t dim : {0, 1, -1}) {
    CAPTURE(dim);
    const int64_t d = dim < 0 ? dim + 3 : dim;
    std::vector<Tensor> xs;
    const int64_t sizes[3] = {2, 1, 3};
    for (int i = 0; i < 3; ++i) {
      Shape shape{2, 3, 4};
      shape[d] = sizes[i];
      xs.push_back(f64_param(shape, 20 + static_cast<uint64_t>(i)));
    }
    const Tensor out = concat(xs, dim);
    Shape expected_shape{2, 3, 4};
    expected_shape[d] = 6;
    REQUIRE(out.shape() == expected_shape);
    const Host3 ho(out);
    int64_t start = 0;
    for (int i = 0; i < 3; ++i) {
      const Host3 hx(xs[static_cast<size_t>(i)]);
      const Shape& s = xs[static_cast<size_t>(i)].shape();
      for (int64_t a = 0; a < s[0]; ++a)
        for (int64_t b = 0; b < s[1]; ++b)
          for (int64_t c = 0; c < s[2]; ++c) {
            int64_t at[3] = {a, b, c};
            at[d] += start;
            CHECK(ho(at[0], at[1], at[2]) == hx(a, b, c));
          }
      start += sizes[i];
    }
    check_gradcheck([&](const std::vector<Tensor>& in) { return concat(in, dim); }, xs);
    // Non-contiguous inputs (transposed views), one of which needs no gradient.
    const Tensor constant = transpose(random_tensor(transposed(xs[0].shape()), 23, -2, 2, DType::f64), 0, 2);
    const Tensor leaf = f64_param(transposed(xs[2].shape()), 24);
    check_gradcheck([&](const std::vector<Tensor>& in) { return concat({constant, in[0], transpose(in[1], 0, 2)}, dim); },
                    {xs[1], leaf});
  }
}

TEST_CASE("index_select: duplicate and unordered indices, any dim, i32 and i64") {
  const Tensor x = random_tensor({4, 5, 3}, 30);
  const Host3 h(x);
  const std::vector<int64_t> idx = {3, 0, 3, 1, 3, 0};
  for (DType index_dtype : {DType::i64, DType::i32}) {
    CAPTURE(dtype_name(index_dtype));
    const Tensor indices = from_vector<int64_t>(idx, {6}).to(index_dtype);
    const Host3 h0(index_select(x, 0, indices));
    const Host3 h1(index_select(x, 1, indices));
    const Host3 h2(index_select(x, -1, from_vector<int64_t>({2, 0, 2}, {3}).to(index_dtype)));
    for (int64_t k = 0; k < 6; ++k) {
      const int64_t i = idx[static_cast<size_t>(k)];
      for (int64_t a = 0; a < 5; ++a)
        for (int64_t b = 0; b < 3; ++b) CHECK(h0(k, a, b) == h(i, a, b));
      for (int64_t a = 0; a < 4; ++a)
        for (int64_t b = 0; b < 3; ++b) CHECK(h1(a, k, b) == h(a, i, b));
    }
    for (int64_t a = 0; a < 4; ++a)
      for (int64_t b = 0; b < 5; ++b) {
        CHECK(h2(a, b, 0) == h(a, b, 2));
        CHECK(h2(a, b, 1) == h(a, b, 0));
        CHECK(h2(a, b, 2) == h(a, b, 2));
      }
  }
  // Every dtype moves unchanged (the forward copies bytes).
  const Tensor ints = from_vector<int64_t>({10, 11, 12, 13, 14, 15}, {3, 2});
  CHECK(index_select(ints, 0, from_vector<int32_t>({2, 2, 0}, {3})).to_vector<int64_t>() ==
        std::vector<int64_t>{14, 15, 14, 15, 10, 11});
  CHECK(index_select(ints.to(DType::u8), 1, from_vector<int64_t>({1}, {1})).to_vector<uint8_t>() ==
        std::vector<uint8_t>{11, 13, 15});
  const Tensor b = x.to(DType::bf16);
  CHECK(host_values(index_select(b, 0, from_vector<int64_t>({1, 0}, {2}))) ==
        host_values(concat({select(b, 0, 1).raw_unsqueeze(0), select(b, 0, 0).raw_unsqueeze(0)}, 0)));
  CHECK(index_select(x, 0, from_vector<int64_t>({}, {0})).shape() == Shape{0, 5, 3});
}

TEST_CASE("index_select backward adds the gradient of duplicated indices") {
  Tensor x = f64_param({4, 2}, 31);
  const Tensor indices = from_vector<int64_t>({3, 0, 3, 3, 1}, {5});
  const Tensor g = from_vector<double>({1, 2, 10, 20, 100, 200, 1000, 2000, 5, 6}, {5, 2});
  backward(index_select(x, 0, indices), g);
  // Row 3 receives positions 0, 2, 3; row 0 position 1; row 1 position 4; row 2 nothing.
  CHECK(host_values(x.grad()) == std::vector<double>{10, 20, 5, 6, 0, 0, 1101, 2202});

  for (int64_t dim : {0, 1, 2}) {
    CAPTURE(dim);
    Tensor y = f64_param({3, 4, 5}, 32);
    const Tensor dup = from_vector<int32_t>({2, 0, 2, 1, 2, 0}, {6});
    check_gradcheck([&](const std::vector<Tensor>& in) { return index_select(in[0], dim, dup); }, {y});
    check_gradcheck([&](const std::vector<Tensor>& in) { return index_select(transpose(in[0], 0, 2), dim, dup); }, {y});
  }
}

TEST_CASE("shape op errors name the op, what was expected and what was got") {
  const Tensor a = zeros({2, 3});
  CHECK_THROWS_WITH_AS(concat({}, 0), "concat: expected at least one tensor, got an empty list", ValueError);
  CHECK_THROWS_WITH_AS(concat({a, zeros({2, 3, 1})}, 0),
                       "concat: expected input 1 to have 2 dims like input 0 (shape [2, 3]), got shape [2, 3, 1]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(concat({a, zeros({2, 3}), zeros({4, 3}), zeros({2, 5})}, 1),
                       "concat: input 2 has shape [4, 3] but input 0 has shape [2, 3] (sizes must match except in dim 1)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(concat({a, zeros({2, 3}, DType::f64)}, 0), "concat: expected all tensors of dtype f32, got f64",
                       TypeError);
  CHECK_THROWS_WITH_AS(concat({full({}, 1.0)}, 0), "concat: expected tensors with at least 1 dim, got a 0-d tensor",
                       ShapeError);
  CHECK_THROWS_AS(concat({a}, 2), IndexError);

  const Tensor x = zeros({4, 2});
  CHECK_THROWS_WITH_AS(index_select(x, 0, from_vector<int64_t>({1, 4}, {2})),
                       "index_select: index 4 at position 1 is out of range for a dim of size 4", IndexError);
  CHECK_THROWS_WITH_AS(index_select(x, 1, from_vector<int32_t>({-1}, {1})),
                       "index_select: index -1 at position 0 is out of range for a dim of size 2", IndexError);
  CHECK_THROWS_WITH_AS(index_select(x, 0, zeros({2})), "index_select: expected indices of dtype i64 or i32, got f32",
                       TypeError);
  CHECK_THROWS_WITH_AS(index_select(x, 0, from_vector<int64_t>({0, 1}, {1, 2})),
                       "index_select: expected 1-D indices, got shape [1, 2]", ShapeError);
  CHECK_THROWS_AS(index_select(x, 2, from_vector<int64_t>({0}, {1})), IndexError);

  CHECK_THROWS_WITH_AS(flatten(zeros({2, 3, 4}), 2, 1),
                       "flatten: expected start_dim <= end_dim, got start_dim 2 and end_dim 1 for shape [2, 3, 4]",
                       ValueError);
  CHECK_THROWS_AS(view(transpose(a, 0, 1), {6}), ShapeError);
  CHECK_THROWS_AS(squeeze(a, 0), ShapeError);
  CHECK_THROWS_AS(narrow(a, 1, 2, 2), IndexError);
  CHECK_THROWS_AS(expand(a, {3, 3}), ShapeError);
}

TEST_CASE("cast: converted values, the gradient in the input's dtype, nothing recorded for the same dtype") {
  const Tensor x = f64_param({3, 4}, 620);
  const Tensor y = cast(x, DType::f32);
  CHECK(y.dtype() == DType::f32);
  CHECK(host_values(y) == host_values(x.to(DType::f32)));
  REQUIRE(y.grad_fn());
  CHECK(y.grad_fn()->name() == "CastBackward");
  CHECK(cast(x, DType::f64).grad_fn() == x.grad_fn());  // x itself: no node
  // An f32 parameter used in bf16 gets an f32 gradient equal to the bf16 gradient widened.
  Tensor w = random_tensor({5}, 621);
  w.set_requires_grad(true);
  const Tensor g = random_tensor({5}, 622).to(DType::bf16);
  backward(cast(w, DType::bf16), g);
  CHECK(w.grad().dtype() == DType::f32);
  CHECK(host_values(w.grad()) == host_values(g.to(DType::f32)));
  // Through a round trip f64 -> f32 -> f64 the gradient is the identity (finite differences
  // large enough that f32 rounding is far below the tolerance).
  GradcheckOptions options;
  options.eps = 1e-3;
  options.atol = 1e-4;
  const auto result = gradcheck([](const std::vector<Tensor>& in) { return cast(cast(in[0], DType::f32), DType::f64); },
                                {f64_param({2, 3}, 623)}, options);
  CHECK_MESSAGE(result.ok, result.message);
  CHECK_THROWS_WITH_AS(cast(zeros({2}, DType::i64), DType::f32), "cast: expected floating dtypes, got i64 to f32",
                       TypeError);
}

// Model code reaches Tensor's views only through the recorded ops: the Tensor methods of the
// same names do not exist (the raw_ ones are for kernels), so x.transpose(1, 2) cannot silently
// cut the graph; it does not compile.
template <class T>
concept HasUnrecordedViewNames = requires(T t) { t.transpose(0, 1); } || requires(T t) { t.reshape(Shape{1}); } ||
                                 requires(T t) { t.permute(std::vector<int64_t>{0}); } ||
                                 requires(T t) { t.expand(Shape{1}); } || requires(T t) { t.view(Shape{1}); } ||
                                 requires(T t) { t.contiguous(); } || requires(T t) { t.unsqueeze(0); } ||
                                 requires(T t) { t.squeeze(0); } || requires(T t) { t.flatten(); } ||
                                 requires(T t) { t.slice(0, 0, 1); } || requires(T t) { t.narrow(0, 0, 1); } ||
                                 requires(T t) { t.select(0, 0); };
static_assert(!HasUnrecordedViewNames<Tensor>, "Tensor must not have methods named like the recorded ops");

TEST_CASE("the view ops model code reaches are recorded: each carries the gradient back to its input") {
  const Tensor x = f64_param({2, 3, 4}, 624);
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> ops = {
      {"reshape", [](const Tensor& t) { return reshape(t, {6, 4}); }},
      {"view", [](const Tensor& t) { return view(t, {4, 6}); }},
      {"flatten", [](const Tensor& t) { return flatten(t); }},
      {"permute", [](const Tensor& t) { return permute(t, {2, 0, 1}); }},
      {"transpose", [](const Tensor& t) { return transpose(t, 0, 2); }},
      {"unsqueeze", [](const Tensor& t) { return unsqueeze(t, 1); }},
      {"squeeze", [](const Tensor& t) { return squeeze(unsqueeze(t, 0), 0); }},
      {"expand", [](const Tensor& t) { return expand(unsqueeze(t, 0), {2, 2, 3, 4}); }},
      {"contiguous", [](const Tensor& t) { return contiguous(transpose(t, 0, 1)); }},
      {"slice", [](const Tensor& t) { return slice(t, 2, 1, 3); }},
      {"narrow", [](const Tensor& t) { return narrow(t, 1, 1, 2); }},
      {"select", [](const Tensor& t) { return select(t, 0, 1); }},
  };
  for (const auto& [name, op] : ops) {
    CAPTURE(name);
    const Tensor y = op(x);
    REQUIRE(y.grad_fn());
    backward(sum(y));
    REQUIRE(x.grad().defined());
    CHECK(x.grad().shape() == x.shape());
    x.set_grad(Tensor());
  }
}
