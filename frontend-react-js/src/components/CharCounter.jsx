/** Characters as the server counts them (code points), so an emoji is one, not two. */
export function countChars(text) {
  return [...text].length;
}

export const WARN_REMAINING = 20;

/** How many characters are left; warns near the limit and says plainly when it is over. */
export default function CharCounter({ count, max }) {
  const remaining = max - count;
  let state = 'ok';
  let text = `${remaining} characters left`;
  if (remaining < 0) {
    state = 'over';
    text = `${-remaining} over the ${max}-character limit`;
  } else if (remaining <= WARN_REMAINING) {
    state = 'warn';
  }
  return (
    <span className={`counter counter-${state}`} data-state={state} aria-live="polite">
      {text}
    </span>
  );
}
