/**
 * Verdicts and rule chains, the shape of every image decision (cert-manager's certificate policies are the model):
 * a rule is a small named function over plain gathered facts that accepts or refuses with a stable reason and a
 * message; a chain is an ordered list of rules, and the first refusal wins, so the reason is the most specific.
 */

/** Accept, or refuse with a reason and a message that says what is wrong. */
export type Verdict<R extends string> = { accept: true } | { accept: false; reason: R; message: string };

/** A named decision over the facts `A`. */
export type Rule<A extends unknown[], R extends string> = (...facts: A) => Verdict<R>;

export const Accept = { accept: true } as const;

/** A refusal with `reason` and `message`. */
export function refuse<R extends string>(reason: R, message: string): Verdict<R> {
  return { accept: false, reason, message };
}

/** Runs the rules in order and returns the first refusal, or Accept when none refuses. */
export function firstRefusal<A extends unknown[], R extends string>(chain: readonly Rule<A, R>[], ...facts: A): Verdict<R> {
  for (const rule of chain) {
    const v = rule(...facts);
    if (!v.accept) return v;
  }
  return Accept;
}
