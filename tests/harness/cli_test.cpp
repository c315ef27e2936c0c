// The CLI skeleton: help, version with the git commit, list, and unknown commands or
// options rejected with one error line and exit status 1.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace {

struct CliRun {
  int status;
  std::string output;  // stdout and stderr together
};

CliRun run_lra(const std::string& args) {
  std::string command = std::string(LRA_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  std::string out;
  std::array<char, 4096> buffer{};
  while (pipe && fgets(buffer.data(), buffer.size(), pipe)) out += buffer.data();
  int raw = pipe ? pclose(pipe) : -1;
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, out};
}

TEST(Cli, HelpListsCommands) {
  CliRun r = run_lra("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.output.find("usage: lra COMMAND"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("list"), std::string::npos) << r.output;
}

TEST(Cli, VersionNamesCommit) {
  CliRun r = run_lra("--version");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.output.find("(commit "), std::string::npos) << r.output;
}

TEST(Cli, ListShowsSections) {
  CliRun r = run_lra("list");
  EXPECT_EQ(r.status, 0) << r.output;
  for (const char* section : {"backends:", "tasks:", "devices:", "cpu ("})
    EXPECT_NE(r.output.find(section), std::string::npos) << section << "\n" << r.output;
  // Each backend says which input dtypes it takes: bf16 is the fused softmax's alone.
  const auto line_of = [&](const std::string& name) {
    const auto at = r.output.find("  " + name + " — ");
    return at == std::string::npos ? std::string() : r.output.substr(at, r.output.find('\n', at) - at);
  };
  EXPECT_NE(line_of("softmax").find("[f32, f64, bf16]"), std::string::npos) << r.output;
  EXPECT_NE(line_of("nystrom").find("[f32, f64]"), std::string::npos) << r.output;
}

TEST(Cli, UnknownCommandAndOptionAreErrors) {
  CliRun cmd = run_lra("frobnicate");
  EXPECT_EQ(cmd.status, 1);
  EXPECT_NE(cmd.output.find("lra: error: unknown command 'frobnicate'"), std::string::npos) << cmd.output;
  CliRun opt = run_lra("list --bogus");
  EXPECT_EQ(opt.status, 1);
  EXPECT_NE(opt.output.find("unknown option '--bogus'"), std::string::npos) << opt.output;
  CliRun top = run_lra("--bogus");
  EXPECT_EQ(top.status, 1);
  CliRun extra = run_lra("list extra");
  EXPECT_EQ(extra.status, 1);
  EXPECT_NE(extra.output.find("unexpected argument 'extra'"), std::string::npos) << extra.output;
}

}  // namespace
