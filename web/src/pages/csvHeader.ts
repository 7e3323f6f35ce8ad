/** The largest file one import takes (`shared::imports::MAX_FILE_BYTES`). */
export const MAX_IMPORT_BYTES = 256 * 1024 * 1024;

/** How much of the file is read to find its header row: a header is far shorter. */
const HEADER_BYTES = 64 * 1024;

/**
 * The column names of a CSV file's first record (RFC 4180 quoting, a UTF-8 BOM dropped), so
 * the page can offer a field per column before anything is uploaded. Empty when the file has
 * no complete first line within the first 64 KiB.
 */
export async function readCsvHeader(file: Blob): Promise<string[]> {
  const text = (await file.slice(0, HEADER_BYTES).text()).replace(/^\uFEFF/, "");
  return parseFirstRecord(text, file.size <= HEADER_BYTES);
}

export function parseFirstRecord(text: string, whole: boolean): string[] {
  const fields: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      fields.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      fields.push(field);
      return fields;
    } else field += c;
  }
  if (!whole || quoted || (!fields.length && !field)) return [];
  fields.push(field);
  return fields;
}

/** "1.2 MB" for a byte count. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}
