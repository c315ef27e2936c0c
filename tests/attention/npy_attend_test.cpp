// .npy round trips, rejected headers, and `lra attend` run as a subprocess against the
// in-process result.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/csv.h"
#include "core/npy.h"
#include "support.h"

namespace lra::test {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  fs::path dir =
      fs::temp_directory_path() / ("lra_attn_test_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

std::string header_bytes(int major, const std::string& dict) {
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  std::size_t len = dict.size();
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i) out += static_cast<char>((len >> (8 * i)) & 0xff);
  return out + dict;
}

TEST(Npy, RoundTripsEveryRankAndDtype) {
  fs::path dir = temp_dir("roundtrip");
  std::vector<Shape> shapes{Shape{},        Shape{5},          Shape{2, 3},
                            Shape{2, 1, 4}, Shape{1, 2, 3, 2}, Shape{0, 3}};
  for (DType dtype : {DType::f32, DType::f64})
    for (const Shape& s : shapes) {
      Tensor t = randn(s, 9, 1.0, dtype);
      std::string path = (dir / "t.npy").string();
      core::write_npy(path, t);
      Tensor r = core::read_npy(path);
      EXPECT_EQ(r.shape(), s);
      EXPECT_EQ(r.dtype(), dtype);
      EXPECT_EQ(r.to_vector(), t.to_vector());
      // The data starts on a 64-byte boundary as NumPy writes it.
      std::string bytes = core::to_npy_bytes(t);
      EXPECT_EQ((bytes.size() - t.bytes()) % 64, 0u);
      EXPECT_EQ(bytes[bytes.size() - t.bytes() - 1], '\n');
    }
  fs::remove_all(dir);
}

TEST(Npy, ReadsHandWrittenHeadersOfEveryVersion) {
  // Bytes as NumPy writes them: little-endian float64 1.5 and -2.0.
  std::string data;
  for (double x : {1.5, -2.0}) data.append(reinterpret_cast<const char*>(&x), 8);
  for (int major : {1, 2, 3}) {
    std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
    Tensor t = core::parse_npy(header_bytes(major, dict + "\n") + data, "mem.npy");
    EXPECT_EQ(t.shape(), Shape{2});
    EXPECT_EQ(t.to_vector(), (std::vector<double>{1.5, -2.0}));
  }
  // Key order and spacing are free in a dict literal.
  Tensor t = core::parse_npy(
      header_bytes(1, "{\"shape\":(1,2),\"fortran_order\":False,\"descr\":\"<f8\"}") + data,
      "mem.npy");
  EXPECT_EQ(t.shape(), (Shape{1, 2}));
}

void expect_error(const std::string& bytes, const std::string& fragment) {
  try {
    core::parse_npy(bytes, "bad.npy");
    ADD_FAILURE() << "accepted a file that should fail with: " << fragment;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("bad.npy"), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  }
}

TEST(Npy, RejectsWhatItCannotRead) {
  std::string four(16, '\0');
  auto h = [](const std::string& dict) { return header_bytes(1, dict + "\n"); };
  expect_error("PK\x03\x04 not npy", "magic");
  expect_error(h("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }") + four,
               "fortran_order");
  expect_error(h("{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }") + four, "big-endian");
  expect_error(h("{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }") + four,
               "'<i4' is not supported");
  expect_error(h("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }") + four,
               "truncated data");
  expect_error(h("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }") + four,
               "unexpected bytes");
  expect_error(h("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 4), }") + four,
               "rank 5");
  expect_error(h("{'descr': '<f4', 'fortran_order': False, }") + four, "no 'shape'");
  expect_error(h("{'descr': '<f4', 'fortran_order': False, 'shape': (4,) ") + four, "malformed");
  expect_error(h("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (4,), }") + four,
               "fortran_order must be");
  expect_error(h("{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }") + four,
               "expected a dimension");
  std::string long_header = header_bytes(1, "{'descr': '<f4'");
  expect_error(long_header.substr(0, 8) + "\xff\x00" + long_header.substr(10),
               "truncated .npy header");
  std::string v4 = h("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }") + four;
  v4[6] = 4;
  expect_error(v4, "version 4.0");
  EXPECT_THROW(core::read_npy("/nonexistent/lra/x.npy"), Error);
}

// `lra attend` on files written here, compared with the same backend run in process.
void attend_round_trip(const std::string& backend, const std::vector<std::string>& sets,
                       const std::string& spec, DType dtype) {
  SCOPED_TRACE(spec);
  fs::path dir = temp_dir("attend_" + backend);
  Shape s{2, 2, 9, 4};
  Tensor q = randn(s, 1, 1.0, dtype), k = randn(s, 2, 1.0, dtype), v = randn(s, 3, 1.0, dtype),
         g = randn(s, 4, 1.0, dtype);
  Tensor mask = prefix_mask(9, {9, 5}, dtype);
  for (auto [name, t] : {std::pair{"q", &q}, {"k", &k}, {"v", &v}, {"g", &g}, {"mask", &mask}})
    core::write_npy((dir / (std::string(name) + ".npy")).string(), *t);
  std::string cmd = "OMP_NUM_THREADS=1 " + std::string(LRA_BINARY) + " attend --backend " + backend;
  for (const auto& kv : sets) cmd += " --set " + kv;
  cmd += " --seed 11 --q " + (dir / "q.npy").string() + " --k " + (dir / "k.npy").string() +
         " --v " + (dir / "v.npy").string() + " --mask " + (dir / "mask.npy").string() + " --out " +
         (dir / "out.npy").string() + " --grad-out " + (dir / "g.npy").string() +
         " --grads-prefix " + (dir / "d_").string() + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;

  attention::AttentionOptions options;
  options.seed = 11;
  options.dtype = dtype;
  auto attn = attention::make_attention(YAML::Load(spec), {2, 2, 9, 4}, options);
  attention::Context ctx;
  Tensor out, dq, dk, dv;
  attn->forward(q, k, v, mask, out, ctx);
  for (auto* p : attn->parameters()) p->zero_grad();
  attn->backward(g, ctx, dq, dk, dv);
  // Same code, same inputs: bit-identical results.
  auto same = [&](const Tensor& expected, const std::string& file) {
    Tensor got = core::read_npy((dir / file).string());
    EXPECT_EQ(got.dtype(), dtype) << file;
    EXPECT_EQ(got.shape(), expected.shape()) << file;
    EXPECT_EQ(got.to_vector(), expected.to_vector()) << file;
  };
  same(out, "out.npy");
  same(dq, "d_q.npy");
  same(dk, "d_k.npy");
  same(dv, "d_v.npy");
  for (auto* p : attn->parameters()) same(p->grad, "d_" + p->name + ".npy");
  fs::remove_all(dir);
}

TEST(Attend, RoundTripMatchesInProcess) {
  attend_round_trip("softmax", {}, "{type: softmax}", DType::f32);
  attend_round_trip("nystrom", {"landmarks=3", "conv_kernel=3"},
                    "{type: nystrom, landmarks: 3, conv_kernel: 3}", DType::f64);
  attend_round_trip("linformer", {"k=4", "share_kv=false"},
                    "{type: linformer, k: 4, share_kv: false}", DType::f32);
}

TEST(Attend, LoadsParametersAndRejectsBadInput) {
  fs::path dir = temp_dir("attend_param");
  Shape s{1, 1, 3, 2};
  Tensor q = randn(s, 1), k = randn(s, 2), v = randn(s, 3);
  core::write_npy((dir / "q.npy").string(), q);
  core::write_npy((dir / "k.npy").string(), k);
  core::write_npy((dir / "v.npy").string(), v);
  core::write_npy((dir / "k32.npy").string(), k.to(DType::f32));
  Tensor eye = Tensor::from_values(Shape{3, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1}, DType::f64);
  core::write_npy((dir / "eye.npy").string(), eye);
  std::string base = "OMP_NUM_THREADS=1 " + std::string(LRA_BINARY) + " attend --q " +
                     (dir / "q.npy").string() + " --v " + (dir / "v.npy").string() + " --out " +
                     (dir / "out.npy").string();
  // Identity projection: Linformer equals exact softmax.
  std::string cmd =
      base + " --k " + (dir / "k.npy").string() +
      " --backend linformer --set k=3 --param linformer_e=" + (dir / "eye.npy").string();
  ASSERT_EQ(std::system((cmd + " 2>/dev/null").c_str()), 0) << cmd;
  auto ref = naive_softmax_attention(q, k, v, Tensor());
  EXPECT_LT(
      max_diff_real_rows(core::read_npy((dir / "out.npy").string()).to_vector(), ref, s, Tensor()),
      1e-12);
  // Mixed dtypes, an unknown parameter and an unknown backend are errors.
  EXPECT_NE(
      std::system(
          (base + " --k " + (dir / "k32.npy").string() + " --backend softmax 2>/dev/null").c_str()),
      0);
  EXPECT_NE(
      std::system((cmd + " --param nope=" + (dir / "eye.npy").string() + " 2>/dev/null").c_str()),
      0);
  EXPECT_NE(
      std::system(
          (base + " --k " + (dir / "k.npy").string() + " --backend nosuch 2>/dev/null").c_str()),
      0);
  fs::remove_all(dir);
}

TEST(Approx, WritesOneRowPerPointAndResumes) {
  fs::path dir = temp_dir("approx");
  std::string config = (dir / "tiny.yaml").string(), csv = (dir / "out.csv").string();
  {
    std::ofstream f(config);
    f << "seq_len: [12, 16]\nbatch: 1\nheads: 2\nhead_dim: 4\nseeds: 2\ndtype: f64\n"
         "input: {type: gaussian, scale: 0.5}\nattention_matrix_max_seq: 12\n"
         "backends:\n  - {type: softmax}\n  - {type: nystrom, landmarks: 16, conv_kernel: 0}\n"
         "  - {type: nystrom, landmarks: 3, conv_kernel: 0}\n  - {type: linformer, k: 4}\n";
  }
  std::string cmd = "OMP_NUM_THREADS=1 " + std::string(LRA_BINARY) + " approx " + config + " --out " + csv + " 2>/dev/null >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  core::CsvTable t = core::read_csv(csv);
  ASSERT_EQ(t.rows.size(), 16u);  // 4 backends x 2 lengths x 2 seeds
  for (const auto& row : t.rows) {
    std::string backend = row[t.column("backend")], params = row[t.column("params")];
    double err = std::stod(row[t.column("error_rel_fro")]);
    std::string attn = row[t.column("attn_error_rel_fro")];
    bool short_seq = row[t.column("seq_len")] == "12";
    EXPECT_EQ(attn.empty(), !short_seq) << backend << " " << params;  // probed only up to N = 12
    if (backend == "softmax" || params.find("landmarks=16") != std::string::npos) {
      EXPECT_LT(err, 1e-12) << backend << " " << params;  // exact (m >= N)
      if (short_seq) {
        EXPECT_LT(std::stod(attn), 1e-12);
      }
    } else {
      EXPECT_GT(err, 1e-6) << backend << " " << params;
    }
    EXPECT_FALSE(row[t.column("commit")].empty());
  }
  // A second run finds every row present and adds none.
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(core::read_csv(csv).rows.size(), 16u);
  // Unknown keys are errors.
  {
    std::ofstream f(config, std::ios::app);
    f << "seq_lens: [4]\n";
  }
  EXPECT_NE(std::system(cmd.c_str()), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lra::test
