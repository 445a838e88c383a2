/* show_job.c - a job's status as hydra status prints it, and its line in
 * hydra jobs: times in UTC, counts, the job's own rate and ETA; whatever the
 * server does not know yet (a rate before any variant, a queued job's
 * start) is shown as "-". */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *text_or_dash(const json_t *v) {
  const char *s = json_string_value(v);
  return s && *s ? s : "-";
}

/* Unix seconds as "2026-12-07 04:47:48Z"; "-" for null. buf of 32 chars. */
static const char *utc_time(const json_t *v, char *buf) {
  if (!json_is_number(v) || json_number_value(v) <= 0)
    return "-";
  const time_t t = (time_t)json_number_value(v);
  struct tm tm;
  if (!gmtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%d %H:%M:%SZ", &tm))
    return "-";
  return buf;
}

static const char *count_or_dash(const json_t *v, char *buf) {
  if (!json_is_integer(v))
    return "-";
  snprintf(buf, 32, "%lld", (long long)json_integer_value(v));
  return buf;
}

static const char *rate_or_dash(const json_t *v, char *buf) {
  if (!json_is_number(v) || json_number_value(v) <= 0)
    return "-";
  snprintf(buf, 32, "%.1f/s", json_number_value(v));
  return buf;
}

/* Seconds as "42 s", "3 min 5 s", "2 h 7 min"; "-" for null. */
static const char *seconds_or_dash(const json_t *v, char *buf) {
  if (!json_is_number(v) || json_number_value(v) < 0)
    return "-";
  const double s = json_number_value(v);
  if (s < 60)
    snprintf(buf, 32, "%.0f s", s);
  else if (s < 3600)
    snprintf(buf, 32, "%d min %d s", (int)(s / 60), (int)s % 60);
  else
    snprintf(buf, 32, "%d h %d min", (int)(s / 3600), (int)s % 3600 / 60);
  return buf;
}

/* "k=v, k=v" of a labels object; "-" for none. */
static void print_labels(const json_t *labels) {
  const char *key;
  json_t *value;
  int n = 0;
  json_object_foreach((json_t *)labels, key, value)
      printf("%s%s=%s", n++ ? ", " : "", key, json_string_value(value));
  printf("%s\n", n ? "" : "-");
}

void cli_print_status(const json_t *j) {
  const json_t *p = json_object_get(j, "progress");
  char a[32], b[32];
  printf("id        %s\n", text_or_dash(json_object_get(j, "id")));
  printf("name      %s\n", text_or_dash(json_object_get(j, "name")));
  printf("labels    ");
  print_labels(json_object_get(j, "labels"));
  printf("state     %s\n", text_or_dash(json_object_get(j, "state")));
  printf("user      %s\nmodel     %s\n", text_or_dash(json_object_get(j, "user")),
         text_or_dash(json_object_get(j, "model")));
  printf("prompts   %s\n", count_or_dash(json_object_get(j, "prompts"), a));
  printf("created   %s\n", utc_time(json_object_get(j, "created_at"), a));
  printf("started   %s\n", utc_time(json_object_get(j, "started_at"), a));
  printf("finished  %s\n", utc_time(json_object_get(j, "finished_at"), a));
  if (json_is_number(json_object_get(j, "deadline")))
    printf("deadline  %s\n", utc_time(json_object_get(j, "deadline"), a));
  printf("progress  %lld/%lld variants, units %lld/%lld\n",
         json_integer_value(json_object_get(p, "variants_done")),
         json_integer_value(json_object_get(p, "variants_total")),
         json_integer_value(json_object_get(p, "units_done")),
         json_integer_value(json_object_get(p, "n_units")));
  printf("rate      %s\n", rate_or_dash(json_object_get(p, "rate"), a));
  printf("eta       %s\n", seconds_or_dash(json_object_get(p, "eta_s"), b));
  if (json_is_integer(json_object_get(j, "queue_position")))
    printf("queue     %lld job(s) ahead\n",
           (long long)json_integer_value(json_object_get(j, "queue_position")));
  printf("rows      %lld\n", json_integer_value(json_object_get(j, "rows")));
  if (json_is_string(json_object_get(j, "error")))
    printf("error     %s\n", json_string_value(json_object_get(j, "error")));
  if (json_is_string(json_object_get(j, "warning")))
    printf("warning   %s\n", json_string_value(json_object_get(j, "warning")));
  if (json_is_string(json_object_get(j, "waiting")))
    printf("waiting   %s\n", json_string_value(json_object_get(j, "waiting")));
}

void cli_print_jobs_header(void) {
  printf("%-32s  %-9s  %-10s  %-10s  %-20s  %7s  %21s  %-10s  %s\n", "id", "state", "user", "model",
         "created (UTC)", "prompts", "variants done/total", "eta", "name");
}

void cli_print_job_line(const json_t *j) {
  const json_t *p = json_object_get(j, "progress");
  char created[32], prompts[32], eta[32], done[48];
  snprintf(done, sizeof done, "%lld/%lld", json_integer_value(json_object_get(p, "variants_done")),
           json_integer_value(json_object_get(p, "variants_total")));
  printf("%-32s  %-9s  %-10s  %-10s  %-20s  %7s  %21s  %-10s  %s\n",
         text_or_dash(json_object_get(j, "id")), text_or_dash(json_object_get(j, "state")),
         text_or_dash(json_object_get(j, "user")), text_or_dash(json_object_get(j, "model")),
         utc_time(json_object_get(j, "created_at"), created),
         count_or_dash(json_object_get(j, "prompts"), prompts), done,
         seconds_or_dash(json_object_get(p, "eta_s"), eta),
         text_or_dash(json_object_get(j, "name")));
}
