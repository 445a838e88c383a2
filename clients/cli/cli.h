/* cli.h - what the hydra command's files share. */
#ifndef HYDRA_CLI_H
#define HYDRA_CLI_H

/* Exit codes (documented in the README). */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_SERVER = 3 };

/* hydra run --model PATH JOB.json [...]; argv excludes "run". */
int cmd_run(int argc, char **argv);

/* hydra table ROWS.ndjson; argv excludes "table". */
int cmd_table(int argc, char **argv);

#endif
