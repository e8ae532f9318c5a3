/** A coloured initial until users have pictures; the hue is stable per handle. */
export default function Avatar({ handle = '', name = '' }) {
  let hue = 0;
  for (const char of handle) hue = (hue * 31 + char.codePointAt(0)) % 360;
  const initial = (name || handle || '?').trim().charAt(0).toUpperCase();
  return (
    <span className="avatar" aria-hidden="true" style={{ background: `hsl(${hue} 55% 40%)` }}>
      {initial}
    </span>
  );
}
