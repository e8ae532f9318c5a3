import { useApi } from '../api.js';
import ActivityFeed from '../components/ActivityFeed.jsx';
import ActivityForm from '../components/ActivityForm.jsx';
import Loadable from '../components/Loadable.jsx';
import { RequireUser } from '../session.jsx';
import { useLoad } from '../useLoad.js';

export default function HomePage() {
  const api = useApi();
  const feed = useLoad(() => api.homeActivities(), 'home');

  async function create(fields) {
    const activity = await api.createActivity(fields);
    feed.setData((activities) => [activity, ...(activities || [])]);
  }

  return (
    <>
      <h1>Home</h1>
      <RequireUser what="post a crud">
        <ActivityForm onCreate={create} />
      </RequireUser>
      <Loadable state={feed}>
        {(activities) => <ActivityFeed activities={activities} title="Home feed" />}
      </Loadable>
    </>
  );
}
