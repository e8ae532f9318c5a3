import { useApi } from '../api.js';
import ActivityFeed from '../components/ActivityFeed.jsx';
import Loadable from '../components/Loadable.jsx';
import { useLoad } from '../useLoad.js';

export default function UserPage({ handle }) {
  const api = useApi();
  const feed = useLoad(() => api.userActivities(handle), handle);
  const name = feed.data?.[0]?.display_name;
  return (
    <>
      <h1>
        {name ? `${name} ` : ''}
        <span className="handle">@{handle}</span>
      </h1>
      <Loadable state={feed}>
        {(activities) => (
          <ActivityFeed
            activities={activities}
            title={`Cruds by @${handle}`}
            emptyText={`@${handle} has not crudded anything yet.`}
          />
        )}
      </Loadable>
    </>
  );
}
