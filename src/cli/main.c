#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/cmd.h"
#include "cli/main.h"
#include "base/interrupt.h"
#include "base/threads.h"

#include "config.h"

int main(int argc, char **argv) {
  int i = 1;
  int threads = 0;
  nl_main_opts mo = {0};
  nl_cli_setup();
  while (i < argc && argv[i][0] == '-') {
    if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
      printf("normlab %s\n", PACKAGE_VERSION);
      return 0;
    }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      nl_help_overview(stdout);
      return 0;
    }
    if (strcmp(argv[i], "--threads") == 0 || strncmp(argv[i], "--threads=", 10) == 0) {
      const char *v = argv[i][9] == '=' ? argv[i] + 10 : (i + 1 < argc ? argv[++i] : NULL);
      char *end = NULL;
      long t = v ? strtol(v, &end, 10) : 0;
      if (!v || *end || t < 1 || t > 256) {
        fprintf(stderr, "normlab: --threads expects an integer between 1 and 256\n");
        return 2;
      }
      threads = (int)t;
      i++;
      continue;
    }
    if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "-c") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "normlab: %s needs a value (%s)\n", argv[i],
                argv[i][1] == 'f' ? "FILE" : "\"CMD; CMD\"");
        return 2;
      }
      if (argv[i][1] == 'f')
        mo.file = argv[i + 1];
      else
        mo.commands = argv[i + 1];
      i += 2;
      continue;
    }
    if (strcmp(argv[i], "-k") == 0) {
      mo.keep_going = 1;
      i++;
      continue;
    }
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    fprintf(stderr, "normlab: unknown option '%s' (try 'normlab --help')\n", argv[i]);
    return 2;
  }
  if (mo.file && mo.commands) {
    fprintf(stderr, "normlab: -f and -c cannot be combined\n");
    return 2;
  }
  if ((mo.file || mo.commands) && i < argc) {
    fprintf(stderr, "normlab: %s runs its own commands; unexpected '%s'\n",
            mo.file ? "-f" : "-c", argv[i]);
    return 2;
  }
  nl_threads_set(threads);
  nl_interrupt_install();
  nl_ctx ctx = {.out = stdout, .err = stderr, .tty = isatty(fileno(stderr))};
  if (i >= argc) return nl_main_interactive(&ctx, &mo);
  return nl_cmd_dispatch(&ctx, argc - i, argv + i);
}
