// `lra data generate` / `lra data check` end to end through the executable.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "task_fixtures.h"

namespace lra::tasks {
namespace {

struct LraRun {
  int status;
  std::string output;
};

LraRun run_lra(const std::string& args) {
  std::string command = std::string(LRA_BINARY) + " " + args + " 2>&1";
  LraRun r{-1, ""};
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return r;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) r.output.append(buffer, n);
  int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(DataCommand, GenerateThenCheckListops) {
  testing::TempDir dir;
  LraRun gen = run_lra("data generate listops --out " + dir.path() + " --seed 11 --train 40 --val 5 --test 6");
  ASSERT_EQ(gen.status, 0) << gen.output;
  LraRun check = run_lra("data check listops " + dir.path());
  ASSERT_EQ(check.status, 0) << check.output;
  EXPECT_NE(check.output.find("train: 40 examples"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("val: 5 examples"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("test: 6 examples"), std::string::npos) << check.output;
  // Same seed, same bytes.
  testing::TempDir again;
  ASSERT_EQ(run_lra("data generate listops --out " + again.path() + " --seed 11 --train 40 --val 5 --test 6").status, 0);
  EXPECT_EQ(testing::read_bytes(dir / "basic_train.tsv"), testing::read_bytes(again / "basic_train.tsv"));
}

TEST(DataCommand, BadArgumentsAreErrors) {
  testing::TempDir dir;
  LraRun unknown = run_lra("data generate listops --out " + dir.path() + " --seed 1 --count 5");
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.output.find("unknown option '--count'"), std::string::npos) << unknown.output;
  LraRun no_gen = run_lra("data generate text --out " + dir.path() + " --seed 1");
  EXPECT_EQ(no_gen.status, 1);
  EXPECT_NE(no_gen.output.find("no generator for task 'text'"), std::string::npos) << no_gen.output;
  LraRun bad_seed = run_lra("data generate listops --out " + dir.path() + " --seed -3");
  EXPECT_EQ(bad_seed.status, 1);
  testing::write_bytes(dir / "basic_train.tsv", "Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t3\n");
  LraRun wrong = run_lra("data check listops " + dir.path());
  EXPECT_EQ(wrong.status, 1);
  EXPECT_NE(wrong.output.find(dir / "basic_train.tsv" + ":2: Target 3"), std::string::npos) << wrong.output;
  LraRun difficulty = run_lra("data check listops " + dir.path() + " --difficulty x");
  EXPECT_NE(difficulty.output.find("unknown key 'difficulty'"), std::string::npos) << difficulty.output;
}

}  // namespace
}  // namespace lra::tasks
