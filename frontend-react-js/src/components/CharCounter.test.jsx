import { fireEvent, render, screen } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import ActivityForm from './ActivityForm.jsx';
import CharCounter, { countChars } from './CharCounter.jsx';

describe('CharCounter', () => {
  it('shows the characters left while far from the limit', () => {
    render(<CharCounter count={10} max={280} />);
    const counter = screen.getByText('270 characters left');
    expect(counter).toHaveAttribute('data-state', 'ok');
  });

  it('warns in the last 20 characters', () => {
    const { rerender } = render(<CharCounter count={259} max={280} />);
    expect(screen.getByText('21 characters left')).toHaveAttribute('data-state', 'ok');
    rerender(<CharCounter count={260} max={280} />);
    expect(screen.getByText('20 characters left')).toHaveAttribute('data-state', 'warn');
    rerender(<CharCounter count={280} max={280} />);
    expect(screen.getByText('0 characters left')).toHaveAttribute('data-state', 'warn');
  });

  it('says by how much the text is over', () => {
    render(<CharCounter count={281} max={280} />);
    expect(screen.getByText('1 over the 280-character limit')).toHaveAttribute('data-state', 'over');
  });

  it('counts an emoji as one character, as the server does', () => {
    expect(countChars('héllo 👋')).toBe(7);
  });
});

describe('the post form counter', () => {
  function typeInto(text) {
    fireEvent.change(screen.getByLabelText('New crud'), { target: { value: text } });
  }

  it('updates as the person types and allows exactly 280 characters', () => {
    render(<ActivityForm onCreate={vi.fn()} />);
    const button = screen.getByRole('button', { name: 'Crud' });
    expect(button).toBeDisabled();
    typeInto('Hello');
    expect(screen.getByText('275 characters left')).toBeInTheDocument();
    expect(button).toBeEnabled();
    typeInto('x'.repeat(280));
    expect(screen.getByText('0 characters left')).toBeInTheDocument();
    expect(button).toBeEnabled();
  });

  it('refuses 281 characters: button off, refusal shown, nothing sent', () => {
    const onCreate = vi.fn();
    render(<ActivityForm onCreate={onCreate} />);
    typeInto('x'.repeat(281));
    const button = screen.getByRole('button', { name: 'Crud' });
    expect(button).toBeDisabled();
    expect(screen.getByText(/Too long: shorten it to 280 characters/)).toBeInTheDocument();
    expect(screen.getByLabelText('New crud')).toHaveAttribute('aria-invalid', 'true');
    fireEvent.submit(button.closest('form'));
    expect(onCreate).not.toHaveBeenCalled();
  });
});
