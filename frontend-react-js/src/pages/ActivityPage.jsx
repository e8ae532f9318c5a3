import { ACTIVITY_MAX_CHARS } from '../config.js';
import { useApi } from '../api.js';
import ActivityFeed from '../components/ActivityFeed.jsx';
import ActivityItem from '../components/ActivityItem.jsx';
import ComposerForm from '../components/ComposerForm.jsx';
import Loadable from '../components/Loadable.jsx';
import { RequireUser } from '../session.jsx';
import { useLoad } from '../useLoad.js';

/** One crud with its replies and a reply form. */
export default function ActivityPage({ uuid }) {
  const api = useApi();
  const state = useLoad(() => api.activity(uuid), uuid);

  async function reply(message) {
    const created = await api.reply(uuid, message);
    state.setData((activity) => ({
      ...activity,
      replies_count: (activity.replies_count ?? 0) + 1,
      replies: [...(activity.replies || []), created],
    }));
  }

  return (
    <>
      <h1>Crud</h1>
      <Loadable state={state}>
        {(activity) => (
          <>
            <ActivityItem activity={activity} />
            <RequireUser what="reply">
              <ComposerForm
                label={`Reply to @${activity.handle}`}
                placeholder={`Reply to @${activity.handle}`}
                max={ACTIVITY_MAX_CHARS}
                submitLabel="Reply"
                onSubmit={reply}
              />
            </RequireUser>
            <h2>Replies</h2>
            <ActivityFeed activities={activity.replies || []} title="Replies" emptyText="No replies yet." />
          </>
        )}
      </Loadable>
    </>
  );
}
