/** Kubernetes label selectors (matchLabels + matchExpressions), evaluated against a node's labels. */
import { SelectorOperators, type LabelSelector, type LabelSelectorRequirement } from "./api-records.js";

function requirementMatches(r: LabelSelectorRequirement, labels: Readonly<Record<string, string>>): boolean {
  const has = Object.hasOwn(labels, r.key);
  const value = labels[r.key];
  const values = r.values ?? [];
  switch (r.operator) {
    case "In":
      return has && value !== undefined && values.includes(value);
    case "NotIn":
      return !has || value === undefined || !values.includes(value);
    case "Exists":
      return has;
    case "DoesNotExist":
      return !has;
    default:
      // An operator the schema does not allow selects nothing rather than everything.
      return false;
  }
}

/**
 * Whether `labels` satisfy `selector`: every matchLabels pair and every expression (AND). An absent or empty
 * selector matches every node, as the ImageCache spec defines (unlike an absent selector in some core APIs).
 */
export function selectorMatches(selector: LabelSelector | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.hasOwn(labels, k) || labels[k] !== v) return false;
  }
  return (selector.matchExpressions ?? []).every((r) => requirementMatches(r, labels));
}

/** Problems that make a selector invalid (empty when valid); the CRD rejects these, this guards other callers. */
export function validateSelector(selector: LabelSelector | undefined): string[] {
  const problems: string[] = [];
  for (const [i, r] of (selector?.matchExpressions ?? []).entries()) {
    const n = r.values?.length ?? 0;
    if ((r.operator === "In" || r.operator === "NotIn") && n === 0) problems.push(`matchExpressions[${i}]: operator ${r.operator} needs values`);
    if ((r.operator === "Exists" || r.operator === "DoesNotExist") && n > 0) problems.push(`matchExpressions[${i}]: operator ${r.operator} takes no values`);
    if (!(SelectorOperators as readonly string[]).includes(r.operator)) problems.push(`matchExpressions[${i}]: unknown operator "${String(r.operator)}"`);
  }
  return problems;
}
