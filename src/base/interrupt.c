#define _POSIX_C_SOURCE 200809L
#include "base/interrupt.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t g_flag = 0;
static int g_installed = 0;

static void on_sigint(int sig) {
  (void)sig;
  g_flag = 1;
}

void nl_interrupt_install(void) {
  if (g_installed) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  g_installed = 1;
}

static _Thread_local int t_ignore = 0;

void nl_interrupt_ignore_thread(void) { t_ignore = 1; }
int nl_interrupted(void) { return !t_ignore && g_flag != 0; }
void nl_interrupt_clear(void) { g_flag = 0; }
void nl_interrupt_raise(void) { g_flag = 1; }
