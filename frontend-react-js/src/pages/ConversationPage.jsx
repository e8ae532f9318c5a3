import { Link } from 'react-router-dom';
import { MESSAGE_MAX_CHARS } from '../config.js';
import { useApi } from '../api.js';
import ComposerForm from '../components/ComposerForm.jsx';
import Loadable from '../components/Loadable.jsx';
import MessageList from '../components/MessageList.jsx';
import { RequireUser, useSession } from '../session.jsx';
import { useLoad } from '../useLoad.js';

function Conversation({ handle }) {
  const api = useApi();
  const { user } = useSession();
  const messages = useLoad(() => api.messages(handle), `messages-${user?.username}-${handle}`);

  async function send(message) {
    const sent = await api.sendMessage({ handle, message });
    messages.setData((list) => [...(list || []), sent]);
  }

  return (
    <Loadable state={messages}>
      {(list) => (
        <>
          <MessageList messages={list} />
          <ComposerForm
            label={`Message @${handle}`}
            placeholder={`Message @${handle}`}
            max={MESSAGE_MAX_CHARS}
            submitLabel="Send"
            onSubmit={send}
          />
        </>
      )}
    </Loadable>
  );
}

/** The conversation with one user, and the form to send them a message. */
export default function ConversationPage({ handle }) {
  return (
    <>
      <p>
        <Link to="/messages">← All messages</Link>
      </p>
      <h1>
        Conversation with <span className="handle">@{handle}</span>
      </h1>
      <RequireUser what={`message @${handle}`}>
        <Conversation handle={handle} />
      </RequireUser>
    </>
  );
}
