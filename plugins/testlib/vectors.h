/* Test vectors for decoder plugins: every vectors/NAME.json of a plugin is run through the
 * real decoder chain (gw_decoders, the same code the daemon runs) and its samples are
 * compared with the expected ones. Format (docs/plugins.md "Test vectors"):
 *
 *   {"description": "...", "decoder": "chirpstack", "device_decoder": "manhole",
 *    "options": {...}, "params": {...}, "location": {"lon": 106.55, "lat": 29.56},
 *    "messages": [ {"hex": "03cf..." | "json": {...} | "text": "...",
 *                   "recv_time": "2026-06-01T08:00:00Z",
 *                   "expect": [{"field": "tilt_deg", "value": 0, "unit": "deg",
 *                               "quality": "good", "tol": 0.01, "time": "..."}],
 *                   "reject": "frame"} ]}
 *
 * A single message may be written at the top level instead of "messages". "expect"
 * lists every sample, in any order; "reject" names the bad-payload reason expected. */
#ifndef CITYGATE_TEST_VECTORS_H
#define CITYGATE_TEST_VECTORS_H

/* Run every .json file in dir with default decoder `decoder`; fails the cmocka test on a
 * mismatch. Returns the number of vector files run. */
int cgt_run_vectors(const char *dir, const char *decoder);
/* Run one vector file. */
void cgt_run_vector_file(const char *path, const char *decoder);

#endif
