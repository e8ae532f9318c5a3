import { useId, useState } from 'react';
import { ACTIVITY_MAX_CHARS, DEFAULT_TTL, TTL_CHOICES } from '../config.js';
import ComposerForm from './ComposerForm.jsx';

/** The post form: message, how long it lives, and the "Crud" button. */
export default function ActivityForm({ onCreate }) {
  const id = useId();
  const [ttl, setTtl] = useState(DEFAULT_TTL);
  return (
    <ComposerForm
      label="New crud"
      placeholder="What would you like to say?"
      max={ACTIVITY_MAX_CHARS}
      submitLabel="Crud"
      onSubmit={(message) => onCreate({ message, ttl })}
    >
      <label htmlFor={id} className="ttl">
        <span>Expires in</span>
        <select id={id} value={ttl} onChange={(event) => setTtl(event.target.value)}>
          {TTL_CHOICES.map((choice) => (
            <option key={choice.value} value={choice.value}>
              {choice.label}
            </option>
          ))}
        </select>
      </label>
    </ComposerForm>
  );
}
