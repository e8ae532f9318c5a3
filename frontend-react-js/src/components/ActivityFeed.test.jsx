import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it } from 'vitest';
import { activity, startStandIn } from '../test/standIn.js';
import { renderApp } from '../test/render.jsx';

let standIn;
afterEach(async () => {
  await standIn?.close();
  standIn = null;
});

const newest = activity({ uuid: 'a-1', handle: 'worf', display_name: 'Worf', message: 'Today is a good day.' });
const older = activity({ uuid: 'a-2', message: 'Cloud is fun!', replies_count: 3 });

describe('feeds', () => {
  it('renders the home feed in the order the server sent, with links', async () => {
    standIn = await startStandIn({ 'GET /api/activities/home': () => [200, [newest, older]] });
    renderApp('/', standIn.url);
    const feed = await screen.findByRole('region', { name: 'Home feed' });
    const items = await within(feed).findAllByRole('article');
    expect(items).toHaveLength(2);
    expect(items[0]).toHaveTextContent('Worf @worf');
    expect(items[0]).toHaveTextContent('Today is a good day.');
    expect(items[1]).toHaveTextContent('Cloud is fun!');
    expect(within(items[0]).getByRole('link', { name: 'Worf @worf' })).toHaveAttribute('href', '/@worf');
    expect(within(items[1]).getByRole('link', { name: /Replies/ })).toHaveAttribute(
      'href',
      '/@andrewbrown/status/a-2',
    );
    expect(items[1]).toHaveTextContent('↩ 3');
  });

  it('puts a new crud first', async () => {
    const mine = activity({ uuid: 'a-3', message: 'Fresh crud' });
    standIn = await startStandIn({
      'GET /api/activities/home': () => [200, [newest, older]],
      'POST /api/activities': () => [200, mine],
    });
    renderApp('/', standIn.url);
    await screen.findByText('Today is a good day.');
    fireEvent.change(screen.getByLabelText('New crud'), { target: { value: 'Fresh crud' } });
    await userEvent.click(screen.getByRole('button', { name: 'Crud' }));
    await waitFor(() => expect(screen.getAllByRole('article')).toHaveLength(3));
    expect(screen.getAllByRole('article')[0]).toHaveTextContent('Fresh crud');
  });

  it('shows an empty feed as such', async () => {
    standIn = await startStandIn({ 'GET /api/activities/notifications': () => [200, []] });
    renderApp('/notifications', standIn.url);
    expect(await screen.findByText('No notifications.')).toBeInTheDocument();
  });

  it("renders a user's feed from /@handle and explains an unknown handle", async () => {
    standIn = await startStandIn({ 'GET /api/activities/@worf': () => [200, [newest]] });
    renderApp('/@worf', standIn.url);
    expect(await screen.findByRole('heading', { name: 'Worf @worf' })).toBeInTheDocument();
    expect(standIn.requests.map((r) => r.path)).toContain('/api/activities/@worf');

    renderApp('/@nobody', standIn.url);
    expect(await screen.findByRole('alert')).toHaveTextContent('There is no user @nobody.');
  });

  it('shows a search_term_blank refusal in words', async () => {
    standIn = await startStandIn({
      'GET /api/activities/search': () => [422, { errors: ['search_term_blank'] }],
    });
    renderApp('/search?term=', standIn.url);
    expect(await screen.findByRole('alert')).toHaveTextContent('Type something to search for.');
  });

  it('shows a crud with its replies', async () => {
    const reply = activity({ uuid: 'r-1', handle: 'garek', display_name: 'Garek', message: 'Indeed.' });
    standIn = await startStandIn({
      'GET /api/activities/a-2': () => [200, { ...older, replies: [{ ...reply, reply_to_activity_uuid: 'a-2' }] }],
    });
    renderApp('/@andrewbrown/status/a-2', standIn.url);
    const replies = await screen.findByRole('region', { name: 'Replies' });
    expect(within(replies).getByText('Indeed.')).toBeInTheDocument();
    expect(screen.getByRole('form', { name: 'Reply to @andrewbrown form' })).toBeInTheDocument();
  });
});
