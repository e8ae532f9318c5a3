import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it } from 'vitest';
import { createApi } from '../api.js';
import { activity, closedUrl, startStandIn } from '../test/standIn.js';
import ActivityForm from './ActivityForm.jsx';

let standIn;
afterEach(async () => {
  await standIn?.close();
  standIn = null;
});

function renderForm(baseUrl, created = []) {
  const api = createApi(baseUrl);
  render(<ActivityForm onCreate={async (fields) => created.push(await api.createActivity(fields))} />);
  return created;
}

async function crud(text) {
  fireEvent.change(screen.getByLabelText('New crud'), { target: { value: text } });
  await userEvent.click(screen.getByRole('button', { name: 'Crud' }));
}

describe('the post form with the server', () => {
  it('sends the message and the chosen ttl, then clears the text', async () => {
    standIn = await startStandIn({
      'POST /api/activities': (body) => [200, activity({ message: body.message })],
    });
    const created = renderForm(standIn.url);
    await userEvent.selectOptions(screen.getByLabelText('Expires in'), '3-hours');
    await crud('Hello Cruddur');
    await waitFor(() => expect(created).toHaveLength(1));
    expect(standIn.requests[0].body).toEqual({ message: 'Hello Cruddur', ttl: '3-hours' });
    expect(screen.getByLabelText('New crud')).toHaveValue('');
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('shows every 422 code as a sentence and keeps the text', async () => {
    standIn = await startStandIn({
      'POST /api/activities': () => [422, { errors: ['message_exceed_max_chars', 'ttl_blank'] }],
    });
    renderForm(standIn.url);
    await crud('Hello Cruddur');
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('That message is too long: the limit is 280 characters.');
    expect(alert).toHaveTextContent('Choose how long the crud should last.');
    expect(alert).not.toHaveTextContent('ttl_blank');
    expect(screen.getByLabelText('New crud')).toHaveValue('Hello Cruddur');
  });

  it('says so when the server fails', async () => {
    standIn = await startStandIn({ 'POST /api/activities': () => [500, { error: 'internal' }] });
    renderForm(standIn.url);
    await crud('Hello');
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'The server had a problem (HTTP 500). Please try again.',
    );
  });

  it('says so when the server cannot be reached', async () => {
    const url = await closedUrl();
    renderForm(url);
    await crud('Hello');
    expect(await screen.findByRole('alert')).toHaveTextContent(`Cannot reach the Cruddur server at ${url}`);
  });
});
