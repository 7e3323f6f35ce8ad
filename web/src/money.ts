/** Money is integer minor units with an ISO 4217 currency; never a float on the wire. */
export function minorDigits(currency: string): number {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
}

export function formatMoney(minor: number, currency: string): string {
  const digits = minorDigits(currency);
  try {
    return new Intl.NumberFormat("en-US", { style: "currency", currency, minimumFractionDigits: digits }).format(
      minor / 10 ** digits,
    );
  } catch {
    return `${(minor / 10 ** digits).toFixed(digits)} ${currency}`;
  }
}

/**
 * "1,234.5" → 123450 (for USD) by string arithmetic, so no float rounding. Null when the text
 * is not an amount with at most the currency's number of decimals.
 */
export function parseMoney(text: string, currency: string): number | null {
  const digits = minorDigits(currency);
  const t = text.trim().replace(/,/g, "");
  const m = /^(\d+)(?:\.(\d*))?$/.exec(t);
  if (!m) return null;
  const frac = m[2] ?? "";
  if (frac.length > digits) return null;
  const n = Number(m[1] + frac.padEnd(digits, "0"));
  return Number.isSafeInteger(n) ? n : null;
}

/** Minor units as the plain decimal text an input shows ("123450" → "1234.50"). */
export function minorToInput(minor: number, currency: string): string {
  const digits = minorDigits(currency);
  if (digits === 0) return String(minor);
  const s = String(minor).padStart(digits + 1, "0");
  return `${s.slice(0, -digits)}.${s.slice(-digits)}`;
}

export function formatByCurrency(by: Record<string, number> | undefined): string {
  const entries = Object.entries(by ?? {});
  if (!entries.length) return formatMoney(0, "USD");
  return entries.map(([c, v]) => formatMoney(v, c)).join(" · ");
}
