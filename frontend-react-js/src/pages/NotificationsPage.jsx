import { useApi } from '../api.js';
import ActivityFeed from '../components/ActivityFeed.jsx';
import Loadable from '../components/Loadable.jsx';
import { useLoad } from '../useLoad.js';

export default function NotificationsPage() {
  const api = useApi();
  const feed = useLoad(() => api.notifications(), 'notifications');
  return (
    <>
      <h1>Notifications</h1>
      <Loadable state={feed}>
        {(activities) => (
          <ActivityFeed activities={activities} title="Notifications" emptyText="No notifications." />
        )}
      </Loadable>
    </>
  );
}
