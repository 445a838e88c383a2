/* cli.h - what the hydra command's files share. */
#ifndef HYDRA_CLI_H
#define HYDRA_CLI_H

#include <stdio.h>

/* Exit codes (documented in the README). */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_SERVER = 3 };

/* hydra run --model PATH JOB.json [...]; argv excludes "run". */
int cmd_run(int argc, char **argv);

/* hydra table ROWS.ndjson; argv excludes "table". */
int cmd_table(int argc, char **argv);

/* One redrawn progress line on stderr (a terminal's): "LABEL [####  ] done/total
 * variants  rate/s  ETA"; end finishes the line. */
void cli_progress_bar(const char *label, long done, long total, double rate, double eta, int end);
/* "12.5/s", or "-/s" while the rate is unknown (rate <= 0 or not finite); buf of 32 chars. */
const char *cli_rate(double rate, char *buf);
/* "ETA 12s", or "ETA ?" while eta < 0 (no rate measured yet); buf of 32 chars. */
const char *cli_eta(double eta, char *buf);

/* A job's status (GET /v1/jobs/{id}'s JSON) as hydra status prints it,
 * one field a line, "-" for what is not known; and its line in hydra jobs,
 * under cli_print_jobs_header's (show_job.c). */
typedef struct json_t json_t;
void cli_print_status(const json_t *job);
void cli_print_jobs_header(void);
void cli_print_job_line(const json_t *job);

/* The per-layer table of NDJSON result rows read from f. */
int table_from_rows(FILE *f, const char *name, FILE *out);

/* A whole file ("-": standard input), NUL-terminated; NULL with err. */
char *read_file(const char *path, size_t *len, char *err);

/* The commands that talk to hydrad (cmd_remote.c); argv excludes the
 * command's name. */
int cmd_models(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_submit(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_results(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_jobs(int argc, char **argv);
int cmd_check(int argc, char **argv);

#endif
