/* replay.c: a main() for a fuzz target without libFuzzer, so its corpus can run under valgrind's
 * memcheck (`make valgrind-fuzz`): the target is built with the plain compiler and no sanitizer,
 * and each file named on the command line is fed once to LLVMFuzzerTestOneInput, as libFuzzer
 * feeds it (a malloc'd copy of exactly its size, so a read past the end is an invalid read). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static uint8_t *slurp(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  for (size_t n; buf && (n = fread(buf + len, 1, cap - len, f)) > 0;) {
    len += n;
    if (len == cap) {
      uint8_t *more = realloc(buf, cap *= 2);
      if (!more) free(buf);
      buf = more;
    }
  }
  fclose(f);
  if (!buf) return NULL;
  /* exactly the input's size, as libFuzzer gives it */
  uint8_t *exact = malloc(len ? len : 1);
  if (exact) memcpy(exact, buf, len);
  free(buf);
  *size = len;
  return exact;
}

int main(int argc, char **argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  int ran = 0;
  for (int i = 1; i < argc; i++) {
    size_t size = 0;
    uint8_t *data = slurp(argv[i], &size);
    if (!data) {
      fprintf(stderr, "replay: cannot read %s\n", argv[i]);
      return 2;
    }
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    ran++;
  }
  printf("replay: %d inputs\n", ran);
  return 0;
}
