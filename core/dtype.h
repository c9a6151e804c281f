// Element types (DType), their sizes and names, bf16 storage type, and dispatch macros that
// instantiate a kernel body for the C++ type behind a runtime DType.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"

#if defined(__CUDACC__)
#define TG_HOST_DEVICE __host__ __device__
#else
#define TG_HOST_DEVICE
#endif

namespace tg {

enum class DType : uint8_t { f32, f64, bf16, i32, i64, u8 };

// bfloat16 as stored: the high 16 bits of an IEEE float, rounded to nearest even.
struct bf16 {
  uint16_t bits = 0;
  TG_HOST_DEVICE bf16() = default;
  TG_HOST_DEVICE explicit bf16(float value) {
    uint32_t u;
    memcpy(&u, &value, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = 0x7fc0;  // NaN stays NaN
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);
      bits = static_cast<uint16_t>(u >> 16);
    }
  }
  TG_HOST_DEVICE explicit operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float value;
    memcpy(&value, &u, sizeof(value));
    return value;
  }
};

constexpr size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

constexpr bool is_floating(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f64 || dtype == DType::bf16;
}

const char* dtype_name(DType dtype);
DType dtype_from_name(const std::string& name);  // "f32", "float32", ... ; ValueError otherwise

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <class T> inline constexpr DType dtype_v = dtype_of<T>::value;

// Arithmetic type for a storage type: bf16 and f32 compute in float, f64 in double.
template <class T> struct acc_type_of { using type = float; };
template <> struct acc_type_of<double> { using type = double; };
template <> struct acc_type_of<int32_t> { using type = int32_t; };
template <> struct acc_type_of<int64_t> { using type = int64_t; };
template <> struct acc_type_of<uint8_t> { using type = int64_t; };
template <class T> using acc_t = typename acc_type_of<T>::type;

}  // namespace tg

// Runs the trailing lambda-like body with `scalar_t` bound to the C++ type of `dtype`.
#define TG_DISPATCH_CASE(enum_value, cpp_type, ...) \
  case ::tg::DType::enum_value: {                   \
    using scalar_t = cpp_type;                      \
    __VA_ARGS__();                                  \
    break;                                          \
  }

#define TG_DISPATCH_ALL(dtype, op_name, ...)                                         \
  [&] {                                                                              \
    switch (dtype) {                                                                 \
      TG_DISPATCH_CASE(f32, float, __VA_ARGS__)                                      \
      TG_DISPATCH_CASE(f64, double, __VA_ARGS__)                                     \
      TG_DISPATCH_CASE(bf16, ::tg::bf16, __VA_ARGS__)                                \
      TG_DISPATCH_CASE(i32, int32_t, __VA_ARGS__)                                    \
      TG_DISPATCH_CASE(i64, int64_t, __VA_ARGS__)                                    \
      TG_DISPATCH_CASE(u8, uint8_t, __VA_ARGS__)                                     \
    }                                                                                \
  }()

// Floating types only; other dtypes raise a TypeError naming the op.
#define TG_DISPATCH_FLOATING(dtype, op_name, ...)                                    \
  [&] {                                                                              \
    switch (dtype) {                                                                 \
      TG_DISPATCH_CASE(f32, float, __VA_ARGS__)                                      \
      TG_DISPATCH_CASE(f64, double, __VA_ARGS__)                                     \
      TG_DISPATCH_CASE(bf16, ::tg::bf16, __VA_ARGS__)                                \
      default:                                                                       \
        TG_THROW(TypeError, op_name, ": expected a floating dtype (f32, f64, bf16), got ", \
                 ::tg::dtype_name(dtype));                                           \
    }                                                                                \
  }()
