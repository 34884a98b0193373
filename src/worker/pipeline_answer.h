/* pipeline_answer.h — the answer to one submitted request: what it needs from the
 * request (the model name it used, n, logprobs), the n engine results gathered (one per
 * choice, in any order), and their encoding as one result message with choices[]
 * (docs/schema.md). krill-worker and krill-run-batch both gather through here.
 *
 * Rules it keeps: one answer per request, written once every choice is back; usage sums
 * completion tokens over the choices and counts the prompt once (as OpenAI);
 * body.model is the name the request used, else the served name. Not thread-safe: one
 * owner (the io thread, the tool's thread). */
#ifndef KRILL_PIPELINE_ANSWER_H
#define KRILL_PIPELINE_ANSWER_H

#include <stdbool.h>

#include "pipeline.h"

typedef struct pipeline_answer pipeline_answer_t;

/* For a request (status CODEC_OK) that was submitted; copies what it needs. NULL on out
 * of memory. */
pipeline_answer_t *pipeline_answer_new(const codec_request_t *req);
void pipeline_answer_free(pipeline_answer_t *a); /* accepts NULL */
/* Takes one result of the request (moved: *r is left cleared). Returns true when every
 * choice is back. */
bool pipeline_answer_add(pipeline_answer_t *a, engine_result_t *r);
/* A choice came back ENGINE_FINISH_ABORTED: the request is given up, not answered. */
bool pipeline_answer_aborted(const pipeline_answer_t *a);
/* The gathered choices (i < n). */
int pipeline_answer_n(const pipeline_answer_t *a);
const engine_result_t *pipeline_answer_result(const pipeline_answer_t *a, int i);

/* Encodes the complete answer: 200 with choices[] when every choice finished STOP or
 * LENGTH, else the first choice's error. ok (may be NULL) says whether it is a 200.
 * 0, or -1 with err. */
int pipeline_encode_answer(pipeline_t *p, const char *custom_id, codec_format_t request_fmt,
                           const pipeline_answer_t *a, bool *ok, buf_t *out, char *err, size_t errlen);

#endif
