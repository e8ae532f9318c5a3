import { useApi } from '../api.js';
import ActivityFeed from '../components/ActivityFeed.jsx';
import Loadable from '../components/Loadable.jsx';
import { RequireUser, useSession } from '../session.jsx';
import { useLoad } from '../useLoad.js';

function Notifications() {
  const api = useApi();
  const { user } = useSession();
  const feed = useLoad(() => api.notifications(), `notifications-${user?.username}`);
  return (
    <Loadable state={feed}>
      {(activities) => <ActivityFeed activities={activities} title="Notifications" emptyText="No notifications." />}
    </Loadable>
  );
}

export default function NotificationsPage() {
  return (
    <>
      <h1>Notifications</h1>
      <RequireUser what="see your notifications">
        <Notifications />
      </RequireUser>
    </>
  );
}
