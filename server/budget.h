/* budget.h - private to server/: a byte budget shared by threads (uploads in
 * flight across connections; progressive-JPEG decodes across workers). A
 * caller takes bytes before it allocates and gives them back after it frees,
 * so the sum of what all holders hold never exceeds the cap. */
#ifndef LOSTD_BUDGET_H
#define LOSTD_BUDGET_H

struct budget;

/* A budget of cap bytes (> 0). Returns NULL when out of memory. Free with
 * budget_free. */
struct budget *budget_init(long long cap);

/* budget_free(NULL) is a no-op. No holder may remain. */
void budget_free(struct budget *b);

/* Takes n bytes if they are free now: 0, else -1 (nothing taken). n <= 0
 * always succeeds. */
int budget_try(struct budget *b, long long n);

/* Takes n bytes, waiting until they are free or until deadline_ms (on the
 * clock of clock_now_ms). Returns 0, ERR_TOOBIG when n exceeds the whole cap
 * (waiting cannot help), or ERR_BUSY at the deadline. */
int budget_acquire(struct budget *b, long long n, double deadline_ms);

/* Gives back n bytes taken earlier. Cannot fail. */
void budget_release(struct budget *b, long long n);

/* Bytes held now, the most ever held at once, and the cap. */
long long budget_used(struct budget *b);
long long budget_peak(struct budget *b);
long long budget_cap(const struct budget *b);

#endif
