import { useState } from 'react';
import { useNavigate } from 'react-router-dom';
import { useApi } from '../api.js';
import Loadable from '../components/Loadable.jsx';
import MessageGroupList from '../components/MessageGroupList.jsx';
import { RequireUser, useSession } from '../session.jsx';
import { useLoad } from '../useLoad.js';

function NewConversation() {
  const navigate = useNavigate();
  const [handle, setHandle] = useState('');
  const cleaned = handle.trim().replace(/^@/, '');
  return (
    <form
      className="search"
      onSubmit={(event) => {
        event.preventDefault();
        if (cleaned) navigate(`/messages/@${cleaned}`);
      }}
    >
      <label htmlFor="new-conversation" className="visually-hidden">
        Message a handle
      </label>
      <input
        id="new-conversation"
        value={handle}
        placeholder="@handle"
        onChange={(event) => setHandle(event.target.value)}
      />
      <button type="submit" disabled={!cleaned}>
        Message
      </button>
    </form>
  );
}

function MessageGroups() {
  const api = useApi();
  const { user } = useSession();
  const groups = useLoad(() => api.messageGroups(), `message-groups-${user?.username}`);
  return (
    <>
      <NewConversation />
      <Loadable state={groups}>{(list) => <MessageGroupList groups={list} />}</Loadable>
    </>
  );
}

export default function MessageGroupsPage() {
  return (
    <>
      <h1>Messages</h1>
      <RequireUser what="read and send messages">
        <MessageGroups />
      </RequireUser>
    </>
  );
}
