/* Start-up wiring of the front-ends (see main.h): the layers below never
 * name each other's front-ends, so this is the only file that includes
 * all of them. */
#include "app/workbench.h"
#include "cli/main.h"
#include "lua/nlua.h"
#include "tui/dashboard.h"

void nl_cli_setup(void) {
  static int done = 0;
  if (done) return;
  done = 1;
  nl_cmd_register(&nl_cmd_lua);
  nl_wb_register(&nl_cmd_dashboard);
  static const nl_wb_block lua_blocks = {nl_lua_block_opens, nl_lua_block_incomplete,
                                         nl_lua_block_run, nl_lua_shared_close};
  nl_wb_set_block(&lua_blocks);
  nl_lua_shared_setup(nl_wb_exec);
}
